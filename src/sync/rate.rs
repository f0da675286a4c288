// RateLimiter: GCRA (the generic cell rate algorithm, a token bucket kept as one timestamp).
//
// State: the theoretical arrival time `tat` on a monotonic clock shared by every loop and thread
// (so one limiter shared across loops limits them together). An acquire of `n` tokens reserves
// `[max(tat, now), +n/rate)`; it may proceed once `now >= tat_new - burst/rate`, so at most
// `burst` tokens pass back to back and `rate` per second on average.
//
// Timer lateness. A waiter wakes up later than asked (asyncio's selector rounds timeouts up to
// the millisecond). Plain GCRA resets `tat` to `now` when the next request arrives late, losing
// the lateness: one consumer at 10,000/s then gets ~93 %. Here lateness of up to `LAG` is
// credited (the schedule is kept), so the achieved rate stays within a fraction of a percent of
// the requested one; the price is that right after a late wake-up up to `rate * LAG` extra tokens
// can pass back to back. After an idle period longer than `LAG` the schedule restarts at `now`,
// so an idle limiter never hands out more than `burst` at once.
//
// Cancel safety: a cancelled acquire gives its reservation back when nobody reserved after it.

use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::pyclass::{PyTraverseError, PyVisit};

use super::{stats_type, Ready, Waiting};
use crate::asyncio;
use crate::awaitable::{Drive, Input, Step};
use crate::runtime;
use crate::task::handle::FutureSetter;

/// How much wake-up lateness is credited (see the module notes).
const LAG: f64 = 0.002;

struct State {
    /// Theoretical arrival time, in seconds since `epoch`.
    tat: f64,
    waiting: usize,
}

/// Admits `rate` acquisitions per second on average, at most `burst` at once (GCRA).
///
/// Shared by tasks of several loops and threads, the limit is global.
///
/// Args:
///     rate: tokens per second (a positive finite number).
///     burst: how many tokens may be taken back to back (an int >= 1).
#[pyclass(module = "toolcase_rs", name = "RateLimiter", frozen)]
pub struct RateLimiter {
    rate: f64,
    burst: u32,
    interval: f64,
    epoch: Instant,
    state: Arc<Mutex<State>>,
}

impl RateLimiter {
    fn now(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64()
    }

    /// Reserves `tokens`; returns (seconds to wait, the reservation's end).
    fn reserve(&self, tokens: u32) -> (f64, f64) {
        let cost = f64::from(tokens) * self.interval;
        let now = self.now();
        let mut st = self.state.lock();
        let start = if st.tat >= now - LAG { st.tat } else { now };
        st.tat = start + cost;
        let allow_at = st.tat - f64::from(self.burst) * self.interval;
        (allow_at - now, st.tat)
    }
}

/// Sleeping until a reservation's turn.
///
/// Cancel safety: see the module notes.
struct RateWait {
    state: Arc<Mutex<State>>,
    delay: f64,
    end: f64,
    cost: f64,
    timer: Option<Py<PyAny>>,
    fut: Option<Py<PyAny>>,
    counted: bool,
}

impl RateWait {
    fn finish(&mut self, py: Python<'_>, refund: bool) {
        if self.end.is_nan() {
            return;
        }
        if let Some(t) = self.timer.take() {
            let _ = t.bind(py).call_method0(intern!(py, "cancel"));
        }
        let mut st = self.state.lock();
        if self.counted {
            st.waiting -= 1;
            self.counted = false;
        }
        if refund && st.tat == self.end {
            st.tat -= self.cost;
        }
        // Done: nothing more to give back.
        self.end = f64::NAN;
    }
}

impl Drive for RateWait {
    fn resume(&mut self, py: Python<'_>, input: Input<'_>) -> PyResult<Step> {
        if let Input::Throw(err) = input {
            self.finish(py, true);
            return Err(err);
        }
        if self.fut.is_some() {
            self.finish(py, false);
            return Ok(Step::Return(py.None()));
        }
        let loop_ = asyncio::running_loop(py, "RateLimiter.acquire()")?;
        let fut = asyncio::create_future(&loop_)?;
        let setter = Bound::new(py, FutureSetter::new(fut.clone().unbind()))?;
        let timer = loop_.call_method1(intern!(py, "call_later"), (self.delay, setter))?;
        self.timer = Some(timer.unbind());
        self.state.lock().waiting += 1;
        self.counted = true;
        asyncio::mark_blocking(&fut)?;
        self.fut = Some(fut.clone().unbind());
        Ok(Step::Yield(fut.unbind()))
    }

    fn close(&mut self, py: Python<'_>) {
        self.finish(py, true);
    }

    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.timer)?;
        visit.call(&self.fut)
    }
}

impl Drop for RateWait {
    fn drop(&mut self) {
        // Never awaited, or dropped mid-wait without close(): give the reservation back.
        if self.fut.is_none() || self.counted {
            Python::attach(|py| self.finish(py, true));
        }
    }
}

fn tokens_arg(value: &Bound<'_, PyAny>, what: &str) -> PyResult<i64> {
    if value.is_instance_of::<pyo3::types::PyBool>()
        || !value.is_instance_of::<pyo3::types::PyInt>()
    {
        return Err(PyTypeError::new_err(format!(
            "{what} must be an int, got {}",
            value.get_type().name()?
        )));
    }
    value.extract()
}

#[pymethods]
impl RateLimiter {
    #[new]
    #[pyo3(signature = (rate, *, burst=None))]
    fn py_new(rate: &Bound<'_, PyAny>, burst: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let numeric = !rate.is_instance_of::<pyo3::types::PyBool>()
            && (rate.is_instance_of::<pyo3::types::PyInt>()
                || rate.is_instance_of::<pyo3::types::PyFloat>());
        if !numeric {
            return Err(PyTypeError::new_err(format!(
                "rate must be a number, got {}",
                rate.get_type().name()?
            )));
        }
        let rate: f64 = rate.extract()?;
        if !rate.is_finite() || rate <= 0.0 {
            return Err(PyValueError::new_err(format!(
                "rate must be a positive finite number, got {rate}"
            )));
        }
        let burst = match burst {
            Some(b) => tokens_arg(b, "burst")?,
            None => 1,
        };
        if burst < 1 {
            return Err(PyValueError::new_err(format!(
                "burst must be >= 1, got {burst}"
            )));
        }
        Ok(RateLimiter {
            rate,
            burst: u32::try_from(burst).unwrap_or(u32::MAX),
            interval: 1.0 / rate,
            epoch: Instant::now(),
            state: Arc::new(Mutex::new(State {
                tat: f64::NEG_INFINITY,
                waiting: 0,
            })),
        })
    }

    /// Wait until `tokens` tokens are available and take them; a checkpoint when it waits.
    #[pyo3(signature = (tokens=None))]
    fn acquire<'py>(
        &self,
        py: Python<'py>,
        tokens: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let tokens = match tokens {
            Some(t) => tokens_arg(t, "tokens")?,
            None => 1,
        };
        if tokens < 1 || tokens > i64::from(self.burst) {
            return Err(PyValueError::new_err(format!(
                "tokens must be between 1 and burst ({}), got {tokens}",
                self.burst
            )));
        }
        if let Some(err) = runtime::current_cancellation(py)? {
            return Err(err);
        }
        let tokens = tokens as u32;
        let (delay, end) = self.reserve(tokens);
        if delay <= 0.0 {
            return Ok(Ready::none(py)?.into_any());
        }
        Ok(Waiting::new(
            py,
            RateWait {
                state: self.state.clone(),
                delay,
                end,
                cost: f64::from(tokens) * self.interval,
                timer: None,
                fut: None,
                counted: false,
            },
        )?
        .into_any())
    }

    fn __aenter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.acquire(py, None)
    }

    #[pyo3(signature = (_exc_type=None, _exc=None, _tb=None))]
    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        _exc_type: Option<&Bound<'py, PyAny>>,
        _exc: Option<&Bound<'py, PyAny>>,
        _tb: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, Ready>> {
        Ready::none(py)
    }

    /// Tokens per second.
    #[getter]
    fn rate(&self) -> f64 {
        self.rate
    }

    /// Tokens that may pass back to back.
    #[getter]
    fn burst(&self) -> u32 {
        self.burst
    }

    fn statistics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let waiting = self.state.lock().waiting;
        stats_type(py, "RateLimiterStatistics")?.call1((self.rate, self.burst, waiting))
    }

    fn __repr__(&self) -> String {
        format!("<RateLimiter rate={} burst={}>", self.rate, self.burst)
    }
}
