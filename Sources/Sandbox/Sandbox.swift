import HostOS
import Layers

/// Running a process from an image in namespaces (issue 4).
public enum Sandbox {}
