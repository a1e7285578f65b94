// Dockerfile syntax: see Parser.swift, Expander.swift, IgnorePatterns.swift.
