// Worker processes: spawning, the framed pipe protocol, killing and reaping.
//
// A `ProcessWorker` is one child interpreter (`python -m toolcase_rs._process_worker`) with
// two pipes: requests go to its stdin, replies come from a dedicated descriptor (its stdout,
// which the child moves away from `sys.stdout` so that prints cannot corrupt the protocol).
// Every message is a frame: a 4-byte little-endian length, then that many bytes (a pickle made
// and read in Python). The reply pipe is non-blocking: the event loop watches it
// (`add_reader`), and `read_frames()` returns the frames complete so far, or None at end of
// file (the child died). Writes block with the GIL released (the child reads continuously).
//
// What Python does around it (`_processes.py`): pickling, which loop watches which worker,
// replacing a worker that was killed or died.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use parking_lot::Mutex;
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// The largest frame accepted (a corrupt length must not allocate without bound).
const MAX_FRAME: usize = 1 << 31;

struct Io {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    /// Bytes read but not yet a whole frame.
    buf: Vec<u8>,
    exit: Option<i32>,
}

/// One worker process.
#[pyclass(module = "toolcase_rs._toolcase_rs", name = "ProcessWorker", frozen)]
pub struct ProcessWorker {
    io: Mutex<Io>,
    pid: u32,
    fd: i32,
    /// The fork generation that started it: a forked child of the parent must never kill or
    /// reap the parent's workers (they are not its children).
    generation: u64,
}

fn set_nonblocking(fd: i32) -> std::io::Result<()> {
    // SAFETY: fcntl on a descriptor we own, with flags read from it.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| -status.signal().unwrap_or(0))
}

#[pymethods]
impl ProcessWorker {
    /// Starts `argv` with piped stdin and stdout (stderr inherited).
    #[new]
    fn spawn(py: Python<'_>, argv: Vec<String>) -> PyResult<Self> {
        let Some((program, args)) = argv.split_first() else {
            return Err(PyValueError::new_err("ProcessWorker needs a command line"));
        };
        let mut child = py
            .detach(|| {
                Command::new(program)
                    .args(args)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .spawn()
            })
            .map_err(|e| PyOSError::new_err(format!("could not start a worker process: {e}")))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let fd = stdout.as_ref().map(|s| s.as_raw_fd()).unwrap_or(-1);
        set_nonblocking(fd).map_err(|e| PyOSError::new_err(format!("worker pipe: {e}")))?;
        Ok(ProcessWorker {
            pid: child.id(),
            io: Mutex::new(Io {
                child,
                stdin,
                stdout,
                buf: Vec::new(),
                exit: None,
            }),
            fd,
            generation: crate::process::generation(),
        })
    }

    #[getter]
    fn pid(&self) -> u32 {
        self.pid
    }

    /// The reply pipe, for `loop.add_reader`.
    fn fileno(&self) -> i32 {
        self.fd
    }

    /// Sends one frame (blocks with the GIL released until the pipe takes it all).
    /// `BrokenPipeError` if the process is gone.
    fn send(&self, py: Python<'_>, payload: &Bound<'_, PyBytes>) -> PyResult<()> {
        let body = payload.as_bytes();
        let len = u32::try_from(body.len())
            .map_err(|_| PyValueError::new_err("a message to a worker process is over 4 GiB"))?;
        // One buffer, one write: a header written on its own wakes the worker for nothing.
        let mut frame = Vec::with_capacity(4 + body.len());
        frame.extend_from_slice(&len.to_le_bytes());
        frame.extend_from_slice(body);
        let result = py.detach(|| {
            let mut io = self.io.lock();
            let Some(stdin) = io.stdin.as_mut() else {
                return Err(std::io::Error::from(ErrorKind::BrokenPipe));
            };
            stdin.write_all(&frame)?;
            stdin.flush()
        });
        result.map_err(|e| {
            if e.kind() == ErrorKind::BrokenPipe {
                pyo3::exceptions::PyBrokenPipeError::new_err(
                    "the worker process is gone (its pipe is closed)",
                )
            } else {
                PyOSError::new_err(format!("writing to a worker process: {e}"))
            }
        })
    }

    /// Reads what is available without blocking; the frames complete so far, or None once the
    /// process closed its end (it exited or died) and no whole frame is left.
    fn read_frames<'py>(&self, py: Python<'py>) -> PyResult<Option<Vec<Bound<'py, PyBytes>>>> {
        let mut io = self.io.lock();
        let mut eof = false;
        let mut chunk = [0u8; 65536];
        loop {
            let Some(stdout) = io.stdout.as_mut() else {
                eof = true;
                break;
            };
            match stdout.read(&mut chunk) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => io.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(PyOSError::new_err(format!("reading a worker process: {e}"))),
            }
        }
        let mut frames = Vec::new();
        let mut at = 0;
        while io.buf.len() - at >= 4 {
            let len = u32::from_le_bytes(io.buf[at..at + 4].try_into().expect("4 bytes")) as usize;
            if len > MAX_FRAME {
                return Err(PyRuntimeError::new_err(
                    "a worker process sent a corrupt message",
                ));
            }
            if io.buf.len() - at - 4 < len {
                break;
            }
            frames.push(PyBytes::new(py, &io.buf[at + 4..at + 4 + len]));
            at += 4 + len;
        }
        io.buf.drain(..at);
        if eof && frames.is_empty() {
            return Ok(None);
        }
        Ok(Some(frames))
    }

    /// Kills the process (SIGKILL) and closes its pipes; does not wait for it.
    fn kill(&self) {
        let mut io = self.io.lock();
        io.stdin = None;
        if io.exit.is_none() && self.generation == crate::process::generation() {
            let _ = io.child.kill();
        }
    }

    /// Closes its stdin (the child exits when it sees end of file).
    fn close_input(&self) {
        self.io.lock().stdin = None;
    }

    /// The exit code if it has exited (negative: the signal that ended it), else None.
    fn poll(&self) -> Option<i32> {
        let mut io = self.io.lock();
        if io.exit.is_none() {
            if let Ok(Some(status)) = io.child.try_wait() {
                io.exit = Some(exit_code(status));
            }
        }
        io.exit
    }

    /// Waits (GIL released) up to `timeout` seconds for it to exit; its exit code or None.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> Option<i32> {
        let deadline = crate::bridge::deadline_after(timeout);
        py.detach(|| loop {
            {
                let mut io = self.io.lock();
                if io.exit.is_some() {
                    return io.exit;
                }
                if let Ok(Some(status)) = io.child.try_wait() {
                    io.exit = Some(exit_code(status));
                    return io.exit;
                }
            }
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        })
    }
}

impl Drop for ProcessWorker {
    fn drop(&mut self) {
        let io = self.io.get_mut();
        io.stdin = None;
        if self.generation != crate::process::generation() {
            return;
        }
        if io.exit.is_none() && !matches!(io.child.try_wait(), Ok(Some(_))) {
            let _ = io.child.kill();
            let _ = io.child.wait();
        }
    }
}
