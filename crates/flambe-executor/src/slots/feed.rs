//! `flambe slot-feed SOCKET`: run by a slot worker over ssh on the results
//! host, it joins the ssh session (stdin/stdout) to the driver's feed
//! socket, both ways, and ends when either side closes: a worker that
//! dies closes the driver's end, a driver that dies closes the worker's.

use std::io::Write;
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::Path;

/// Relay stdin/stdout to the socket and back; returns the exit code.
pub fn relay_feed(socket: &Path) -> i32 {
    let stream = match UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "flambe slot-feed: no driver listens on {} ({e}); the experiment has ended or its driver died",
                socket.display()
            );
            return 1;
        }
    };
    let Ok(mut to_driver) = stream.try_clone() else {
        return 1;
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut to_driver);
        // The worker is gone: the driver hears the end.
        let _ = to_driver.shutdown(Shutdown::Write);
    });
    let mut from_driver = stream;
    let mut stdout = std::io::stdout().lock();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match std::io::Read::read(&mut from_driver, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                // Each message is sent on as soon as it arrives.
                if stdout.write_all(&buf[..n]).is_err() || stdout.flush().is_err() {
                    break;
                }
            }
        }
    }
    0
}
