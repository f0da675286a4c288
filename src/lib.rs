// toolcase_rs native core: the one Python module this crate exports.
//
// Layers (see the design notes at the top of each module):
//   scope/      scope tree, deadline heap, CancelScope          (pure Rust core + bindings)
//   task/       TaskGroup, TaskHandle, start(), eager start
//   time.rs     checkpoints and sleeping
//   sync/       Lock, RLock, Semaphore, CapacityLimiter, Event, Queue (any loop, any thread)
//   bridge/     LoopPort: the GIL-free way other threads wake a loop; Parker for threads
//   runtime.rs  the per-thread registry and cancellation delivery that glue them together
//   awaitable.rs, asyncio.rs   the await protocol and the asyncio calls everything uses
// Everything runs synchronously on the event-loop thread; waits are native asyncio futures.

use pyo3::prelude::*;

pub mod asyncio;
pub mod awaitable;
pub mod bridge;
pub mod runtime;
pub mod scope;
pub mod sync;
pub mod task;
pub mod time;

#[pymodule]
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
    m.add(
        "TaskCancelled",
        py.get_type::<task::handle::TaskCancelled>(),
    )?;
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
    // A forked child must not read the parent's running loop (see asyncio.rs).
    let after_fork = m.getattr("after_fork")?;
    let kwargs = pyo3::types::PyDict::new(py);
    kwargs.set_item("after_in_child", after_fork)?;
    py.import("os")?
        .getattr("register_at_fork")?
        .call((), Some(&kwargs))?;
    awaitable::install_am_send(py)?;
    Ok(())
}
