// ctr build.
