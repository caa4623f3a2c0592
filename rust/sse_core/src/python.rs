//! The `agentgateway._core` extension module: a thin binding over the pure-Rust core.
//! Errors are converted in one place (`From<CoreError> for PyErr`), and every entry point runs
//! under `catch_unwind`, so a bug hit by one stream raises `CoreError` for that stream only instead
//! of pyo3's `PanicException` (a `BaseException` that would escape the gateway's handlers).

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::error::CoreError as Error;
use crate::framing::http1;
use crate::providers::{self, Usage};

create_exception!(
    agentgateway._core,
    CoreError,
    PyValueError,
    "An upstream response the core cannot translate (invalid JSON, unknown provider, ...), or an internal error of the core."
);

create_exception!(
    agentgateway._core,
    UpstreamReportedError,
    CoreError,
    "A successful HTTP answer whose body is the provider's error: args are (message, status, code)."
);

impl From<Error> for PyErr {
    #[cold]
    fn from(err: Error) -> Self {
        match err {
            Error::Upstream {
                status,
                code,
                message,
            } => UpstreamReportedError::new_err((message, status, code)),
            other => CoreError::new_err(other.to_string()),
        }
    }
}

/// Keep the scratch output buffer between calls, unless one call made it this big.
const MAX_KEPT_CAPACITY: usize = 1 << 20;

#[cold]
#[inline(never)]
fn panic_error(payload: &(dyn Any + Send)) -> Error {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("panic");
    Error::internal(message)
}

fn guarded<T>(f: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| Err(panic_error(&*payload)))
}

type UsageTuple = (u64, u64, u64);

fn usage_tuple(usage: Option<Usage>) -> Option<UsageTuple> {
    usage.as_ref().map(Usage::as_tuple)
}

/// Translates one upstream streaming response into OpenAI SSE frames.
#[pyclass(module = "agentgateway._core", name = "StreamTranslator")]
pub struct PyStreamTranslator {
    inner: providers::StreamTranslator,
    /// Scratch buffer for the frames of one call.
    out: Vec<u8>,
    /// A panic left `inner` in an unknown state: refuse further calls.
    poisoned: bool,
}

impl PyStreamTranslator {
    fn call<'py>(
        &mut self,
        py: Python<'py>,
        f: impl FnOnce(&mut providers::StreamTranslator, &mut Vec<u8>) -> Result<(), Error>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        if self.poisoned {
            return Err(Error::internal("the translator failed earlier in this stream").into());
        }
        self.out.clear();
        let (inner, out) = (&mut self.inner, &mut self.out);
        let result = catch_unwind(AssertUnwindSafe(|| f(inner, out)));
        let result = result.unwrap_or_else(|payload| {
            self.poisoned = true;
            Err(panic_error(&*payload))
        });
        result?;
        let bytes = PyBytes::new(py, &self.out);
        if self.out.capacity() > MAX_KEPT_CAPACITY {
            self.out = Vec::new();
        }
        Ok(bytes)
    }
}

#[pymethods]
impl PyStreamTranslator {
    #[new]
    #[pyo3(signature = (provider, client_model, include_usage))]
    fn new(provider: &str, client_model: Option<String>, include_usage: bool) -> PyResult<Self> {
        let inner =
            guarded(|| providers::new_stream_translator(provider, client_model, include_usage))?;
        Ok(Self {
            inner,
            out: Vec::new(),
            poisoned: false,
        })
    }

    /// Translate one chunk of the upstream body; returns complete SSE frames (maybe empty).
    fn feed<'py>(&mut self, py: Python<'py>, chunk: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        self.call(py, |inner, out| inner.feed_into(chunk, out))
    }

    /// Signal upstream EOF; returns the last frames.
    fn finish<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        self.call(py, |inner, out| inner.finish_into(out))
    }

    /// `(prompt_tokens, completion_tokens, total_tokens)` of the last non-null usage, or None.
    #[getter]
    fn usage(&self) -> Option<UsageTuple> {
        usage_tuple(self.inner.usage())
    }

    /// The last non-null `finish_reason`, or None.
    #[getter]
    fn finish_reason(&self) -> Option<&str> {
        self.inner.finish_reason()
    }

    /// The first error recorded (upstream error, failed chunk, truncation), or None.
    #[getter]
    fn error(&self) -> Option<&str> {
        self.inner.error()
    }

    /// Whether `data: [DONE]` was sent.
    #[getter]
    fn done(&self) -> bool {
        self.inner.done()
    }

    /// Whether an untranslatable upstream chunk ended the stream with an error frame.
    #[getter]
    fn failed(&self) -> bool {
        self.inner.failed()
    }
}

/// Translate a whole (non-streaming) upstream response body.
#[pyfunction]
#[pyo3(signature = (provider, body, client_model))]
fn translate_response<'py>(
    py: Python<'py>,
    provider: &str,
    body: &[u8],
    client_model: Option<&str>,
) -> PyResult<(Bound<'py, PyBytes>, Option<UsageTuple>)> {
    let (out, usage) = guarded(|| providers::translate_response(provider, body, client_model))?;
    Ok((PyBytes::new(py, &out), usage_tuple(usage)))
}

type HeadTuple<'py> = (u16, Vec<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)>);

/// Frames one upstream HTTP/1.1 response: one `feed` per network read.
#[pyclass(module = "agentgateway._core", name = "ResponseParser")]
pub struct PyResponseParser {
    inner: http1::ResponseParser,
    /// Scratch buffer for the body bytes of one call.
    body: Vec<u8>,
}

#[pymethods]
impl PyResponseParser {
    #[new]
    fn new() -> Self {
        Self {
            inner: http1::ResponseParser::new(),
            body: Vec::new(),
        }
    }

    /// Parse one read: `(head if it completed now, else None; decoded body bytes of this read)`.
    #[allow(clippy::type_complexity)]
    fn feed<'py>(
        &mut self,
        py: Python<'py>,
        data: &[u8],
    ) -> PyResult<(Option<HeadTuple<'py>>, Bound<'py, PyBytes>)> {
        self.body.clear();
        let (inner, body) = (&mut self.inner, &mut self.body);
        let head = guarded(|| inner.feed(data, body))?;
        let head = head.map(|head| {
            let headers = head
                .headers
                .iter()
                .map(|(name, value)| (PyBytes::new(py, name), PyBytes::new(py, value)))
                .collect();
            (head.status, headers)
        });
        let bytes = PyBytes::new(py, &self.body);
        if self.body.capacity() > MAX_KEPT_CAPACITY {
            self.body = Vec::new();
        }
        Ok((head, bytes))
    }

    /// The connection closed: a close-delimited body ends; anything else unfinished raises.
    fn finish(&mut self) -> PyResult<()> {
        let inner = &mut self.inner;
        guarded(|| inner.finish())?;
        Ok(())
    }

    /// Whether the whole response has been read.
    #[getter]
    fn complete(&self) -> bool {
        self.inner.is_complete()
    }

    /// Whether the connection may carry another request now.
    #[getter]
    fn keep_alive(&self) -> bool {
        self.inner.keep_alive()
    }
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("CoreError", m.py().get_type::<CoreError>())?;
    m.add(
        "UpstreamReportedError",
        m.py().get_type::<UpstreamReportedError>(),
    )?;
    m.add_class::<PyStreamTranslator>()?;
    m.add_class::<PyResponseParser>()?;
    m.add_function(wrap_pyfunction!(translate_response, m)?)?;
    Ok(())
}
