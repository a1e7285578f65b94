import Testing
@testable import Dockerfile
