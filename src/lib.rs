// toolcase_rs native core: the one Python module this crate exports.
//
// Layers (see the design notes at the top of each module), lower ones first:
//   scope/tree.rs, scope/deadline.rs, sync/waiters.rs, bridge/, process.rs
//                  pure Rust: scope tree, deadline heap, waiter queue, LoopPort protocol, thread
//                  and fork identity (covered by `cargo test`)
//   loop_runtime/  LoopRuntime: one per event loop (scope tree, task registry, delivery,
//                  deadline heap + timer, LoopPort); handles hold an Arc to theirs
//   scope/         CancelScope and its constructors
//   task/          TaskGroup, TaskHandle, start(), eager start
//   time.rs        checkpoints and sleeping
//   sync/          Lock, RLock, Semaphore, CapacityLimiter, Event, Queue, RateLimiter
//   worker/        worker threads, CancelToken, calls into a loop from other threads
//   awaitable.rs, asyncio.rs, errors.rs   the await protocol, asyncio calls, exceptions
// Everything runs synchronously on the event-loop thread; waits are native asyncio futures.
//
// `gil_used = true`: the module relies on the GIL being held for its Python objects (frozen
// classes keep their state behind mutexes, but not every path has been checked to be sound
// when several threads run Python code at the same time). On a free-threaded interpreter,
// importing it re-enables the GIL, as CPython does for modules that do not declare support.

use pyo3::prelude::*;

pub mod asyncio;
pub mod awaitable;
pub mod bridge;
pub mod errors;
pub mod loop_runtime;
pub mod process;
pub mod scope;
pub mod sync;
pub mod task;
pub mod time;
pub mod worker;

#[pymodule(gil_used = true)]
fn _toolcase_rs(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<scope::CancelScope>()?;
    m.add_class::<task::TaskGroup>()?;
    m.add_class::<task::TaskStatus>()?;
    m.add_class::<task::handle::TaskHandle>()?;
    m.add_class::<sync::lock::Lock>()?;
    m.add_class::<sync::lock::RLock>()?;
    m.add_class::<sync::semaphore::Semaphore>()?;
    m.add_class::<sync::semaphore::CapacityLimiter>()?;
    m.add_class::<sync::event::Event>()?;
    m.add_class::<sync::queue::Queue>()?;
    m.add_class::<sync::rate::RateLimiter>()?;
    m.add_class::<awaitable::Ready>()?;
    m.add_class::<awaitable::Waiting>()?;
    errors::register(m)?;
    worker::register(m)?;
    m.add("TASK_STATUS_IGNORED", task::TaskStatus::ignored())?;
    m.add("CANCEL_MESSAGE_PREFIX", asyncio::CANCEL_PREFIX)?;
    m.add_function(wrap_pyfunction!(scope::move_on_after, m)?)?;
    m.add_function(wrap_pyfunction!(scope::move_on_at, m)?)?;
    m.add_function(wrap_pyfunction!(scope::fail_after, m)?)?;
    m.add_function(wrap_pyfunction!(scope::fail_at, m)?)?;
    m.add_function(wrap_pyfunction!(scope::current_effective_deadline, m)?)?;
    m.add_function(wrap_pyfunction!(scope::current_time, m)?)?;
    m.add_function(wrap_pyfunction!(time::checkpoint, m)?)?;
    m.add_function(wrap_pyfunction!(time::sleep, m)?)?;
    m.add_function(wrap_pyfunction!(time::sleep_until, m)?)?;
    m.add_function(wrap_pyfunction!(time::sleep_forever, m)?)?;
    m.add_function(wrap_pyfunction!(asyncio::after_fork, m)?)?;
    // A forked child must not read the parent's running loop, nor grant to parent threads.
    let after_fork = m.getattr("after_fork")?;
    let kwargs = pyo3::types::PyDict::new(py);
    kwargs.set_item("after_in_child", after_fork)?;
    py.import("os")?
        .getattr("register_at_fork")?
        .call((), Some(&kwargs))?;
    awaitable::install_slots(py)?;
    Ok(())
}
