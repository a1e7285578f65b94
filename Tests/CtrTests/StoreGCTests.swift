import Foundation
import Testing

/// `ctr prune` against writers that run at the same time (issue 11, point 3): builds (RUN and
/// COPY, cache on), loads, pulls from the test registry and runs go on in loops while prune
/// runs in a loop; every command must succeed and every image listed at the end must run.
@Suite(.serialized) struct StoreGCTests {
    @Test(arguments: [Who.rootless, Who.root])
    func pruneInALoopAgainstBuildsLoadsPullsAndRuns(_ who: Who) throws {
        guard who.available, TestEnv.haveBusybox else { print("skip \(who): \(TestEnv.setupHint)"); return }
        guard TestRegistry.available, let reg = TestRegistry.plain else { print("skip: \(TestRegistry.skipReason)"); return }
        let w = try Workspace(who)
        try w.makeHome()
        let repo = "\(reg.addr)/gc\(UUID().uuidString.prefix(8).lowercased())"
        // images of their own layers, so that a load and a pull write a layer each time (the
        // image is removed before each), and one for a detached container whose image goes
        let setup = """
        set -e
        export CTR_ROOT=\(w.store) HOME=\(w.home) XDG_RUNTIME_DIR=\(w.dir)/run
        C=\(TestEnv.binary)
        $C import --tag busybox:local --change 'CMD ["sh"]' \(TestEnv.busyboxTar) >/dev/null
        for n in loadme pullme keep; do
          mkdir $n && tar -C $n -xf \(TestEnv.busyboxTar) && echo $n > $n/etc/marker
          $C import --tag $n:1 $n >/dev/null
        done
        $C save -o load.tar loadme:1
        $C push -q pullme:1 \(repo):1 >/dev/null
        $C rmi loadme:1 pullme:1 >/dev/null
        for i in 1 2; do
          mkdir -p ctx$i
          echo 0 > ctx$i/f
          echo fixed > ctx$i/h
          printf 'FROM busybox:local\\nCOPY f /f\\nRUN cat /f > /g && echo ran$i >> /g\\nCOPY h /h\\n' > ctx$i/Dockerfile
          $C build -q --network none -t b$i ctx$i >/dev/null
        done
        # a detached container on an image that is then removed: prune keeps its layers
        # (and its upper dir) for as long as the container exists
        $C run -d --name keeper --network none keep:1 sleep 120 >/dev/null
        $C exec keeper sh -c 'echo upper > /up'
        $C rmi -f keep:1 >/dev/null
        """
        let s = try w.bash(setup)
        expectOK(s, "setup")
        guard s.status == 0 else { return }

        let loops = """
        export CTR_ROOT=\(w.store) HOME=\(w.home) XDG_RUNTIME_DIR=\(w.dir)/run
        C=\(TestEnv.binary)
        # each loop for 5 s, and at least twice (a busy machine runs fewer rounds)
        end=$((SECONDS + 5))
        fail() { echo "FAIL $1: $(tail -n 3 $2 | tr '\\n' ' ')"; }
        ( n=0; while [ $SECONDS -lt $end ] || [ $n -lt 2 ]; do n=$((n+1)); $C prune >/dev/null 2>p.err || fail prune p.err; done; echo "prunes $n" ) &
        for i in 1 2; do
          ( n=0; while [ $SECONDS -lt $end ] || [ $n -lt 2 ]; do n=$((n+1))
              # every other build changes the COPY source (COPY and RUN run), the others are cached
              [ $((n % 2)) = 0 ] && echo $n > ctx$i/f
              $C build -q --network none -t b$i ctx$i >/dev/null 2>b$i.err || fail build$i b$i.err
            done; echo "builds$i $n" ) &
        done
        ( n=0; while [ $SECONDS -lt $end ] || [ $n -lt 2 ]; do n=$((n+1))
            $C load -q -i load.tar >/dev/null 2>l.err || fail load l.err
            $C run --rm --network none loadme:1 cat /etc/marker >/dev/null 2>l.err || fail run-loaded l.err
            $C rmi loadme:1 >/dev/null 2>l.err || fail rmi-loaded l.err
          done; echo "loads $n" ) &
        ( n=0; while [ $SECONDS -lt $end ] || [ $n -lt 2 ]; do n=$((n+1))
            $C pull -q \(repo):1 >/dev/null 2>u.err || fail pull u.err
            $C rmi \(repo):1 >/dev/null 2>u.err || fail rmi-pulled u.err
          done; echo "pulls $n" ) &
        ( n=0; while [ $SECONDS -lt $end ] || [ $n -lt 2 ]; do n=$((n+1))
            # b1 is moved by a build loop while this runs it
            $C run --rm --network none b1 cat /g >/dev/null 2>r.err || fail run r.err
          done; echo "runs $n" ) &
        wait
        """
        let r = try w.bash(loops)
        #expect(!r.stdout.contains("FAIL"), "\(r)")
        // the loops did run, prune among them
        for what in ["prunes", "builds1", "builds2", "loads", "pulls", "runs"] {
            let n = r.stdout.split(separator: "\n").first { $0.hasPrefix(what + " ") }.flatMap { Int($0.split(separator: " ")[1]) } ?? 0
            #expect(n >= 2, "\(what) ran \(n) times: \(r)")
        }
        print("\(who): \(r.stdout.split(separator: "\n").filter { !$0.hasPrefix("FAIL") }.joined(separator: ", "))")

        // a last prune, then every image listed runs, and the detached container still has
        // its image's files and its own
        expectOK(try w.ctrHome(["prune"]))
        let ids = try w.ctrHome(["images", "-q"])
        expectOK(ids)
        #expect(!ids.lines.isEmpty)
        for id in Set(ids.lines) {
            expectOK(try w.ctrHome(["run", "--rm", "--network", "none", id, "true"]), "image \(id)")
        }
        let kept = try w.ctrHome(["exec", "keeper", "cat", "/etc/marker", "/up"])
        expectOK(kept)
        #expect(kept.stdout == "keep\nupper\n", "\(kept)")
        expectOK(try w.ctrHome(["rm", "-f", "keeper"]))
    }
}
