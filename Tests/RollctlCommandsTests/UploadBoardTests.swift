import Testing
import Engine
@testable import RollctlCommands

/// The live view's upload line: the uploads in flight, the slowest first; nothing once they ended.
@Suite struct UploadBoardTests {
    @Test func theLineSumsTheUploadsInFlightAndForgetsFinishedOnes() {
        let board = UploadBoard()
        #expect(board.line() == nil)
        board.update(UploadProgress(host: "web-001", file: "k.deb", sent: 75 << 20, total: 100 << 20, finished: false))
        board.update(UploadProgress(host: "web-002", file: "k.deb", sent: 25 << 20, total: 100 << 20, finished: false))
        #expect(board.line() == "uploading to 2 hosts: 100 MiB of 200 MiB (50%) — web-002 25%, web-001 75%")
        board.update(UploadProgress(host: "web-002", file: "k.deb", sent: 100 << 20, total: 100 << 20, finished: true))
        #expect(board.line()?.hasPrefix("uploading to 1 host: ") == true)
        board.update(UploadProgress(host: "web-001", file: "k.deb", sent: 0, total: 100 << 20, finished: true))
        #expect(board.line() == nil)
    }
}
