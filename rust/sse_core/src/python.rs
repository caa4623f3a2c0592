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
use crate::error_kind::{self as kinds, ErrorKind};
use crate::framing::http1;
use crate::providers::{self, ClientApi, Usage};
use crate::sigv4;

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

/// `(prompt, completion, total, cached, cache_write, reasoning)`: the last three None when the
/// provider did not say.
type UsageTuple = (u64, u64, u64, Option<u64>, Option<u64>, Option<u64>);

fn usage_tuple(usage: Option<Usage>) -> Option<UsageTuple> {
    usage.map(|u| {
        (
            u.prompt_tokens,
            u.completion_tokens,
            u.total_tokens,
            u.cached_tokens,
            u.cache_write_tokens,
            u.reasoning_tokens,
        )
    })
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

/// The client API named `name` (`"openai"`, `"anthropic"`).
fn client_api(name: &str) -> Result<ClientApi, Error> {
    ClientApi::from_name(name).ok_or_else(|| Error::UnknownClientApi(name.to_owned()))
}

#[pymethods]
impl PyStreamTranslator {
    #[new]
    #[pyo3(signature = (provider, client_model, include_usage, client_api="openai", *, choice=None, completion_id=""))]
    fn new(
        provider: &str,
        client_model: Option<String>,
        include_usage: bool,
        client_api: &str,
        choice: Option<u32>,
        completion_id: &str,
    ) -> PyResult<Self> {
        let api = self::client_api(client_api)?;
        let mut inner = guarded(|| {
            providers::new_stream_translator_for(provider, client_model, include_usage, api)
        })?;
        if let Some(index) = choice {
            if !guarded(|| Ok(inner.as_choice(index, completion_id)))? {
                return Err(CoreError::new_err(format!(
                    "the {provider} translator for {client_api} clients cannot write one choice of a merged answer"
                )));
            }
        }
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

    /// `(prompt, completion, total, cached, cache_write, reasoning)` of the last non-null usage,
    /// or None.
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
#[pyo3(signature = (provider, body, client_model, client_api="openai"))]
fn translate_response<'py>(
    py: Python<'py>,
    provider: &str,
    body: &[u8],
    client_model: Option<&str>,
    client_api: &str,
) -> PyResult<(Bound<'py, PyBytes>, Option<UsageTuple>)> {
    let api = self::client_api(client_api)?;
    let (out, usage) =
        guarded(|| providers::translate_response_for(provider, body, client_model, api))?;
    Ok((PyBytes::new(py, &out), usage_tuple(usage)))
}

/// `(status, OpenAI type, code)` of the error kind `name` (see `error_kind.rs`).
#[pyfunction(name = "error_kind")]
fn py_error_kind(name: &str) -> PyResult<(u16, &'static str, Option<&'static str>)> {
    let kind =
        ErrorKind::from_name(name).ok_or_else(|| Error::UnknownErrorKind(name.to_owned()))?;
    Ok((kind.status(), kind.openai_type(), kind.code()))
}

/// The OpenAI (or Anthropic) error `type` for an HTTP status.
#[pyfunction(name = "error_type_for_status")]
#[pyo3(signature = (status, client_api="openai"))]
fn py_error_type_for_status(status: u16, client_api: &str) -> PyResult<&'static str> {
    Ok(match self::client_api(client_api)? {
        ClientApi::OpenAI => kinds::error_type_for_status(status),
        ClientApi::Anthropic => kinds::anthropic_error_type_for_status(status),
    })
}

/// Anthropic's error body `{"type":"error","error":{"type","message"}}` (`event=False`), or its
/// stream event `event: error\ndata: <that body>\n\n` (`event=True`); the type from `status`.
#[pyfunction(name = "anthropic_error")]
#[pyo3(signature = (message, status, event=false))]
fn py_anthropic_error<'py>(
    py: Python<'py>,
    message: &str,
    status: u16,
    event: bool,
) -> Bound<'py, PyBytes> {
    let mut out = Vec::with_capacity(96 + message.len());
    if event {
        kinds::write_anthropic_error_event(&mut out, message, status);
    } else {
        kinds::write_anthropic_error(&mut out, message, status);
    }
    PyBytes::new(py, &out)
}

/// The one in-stream error event: `data: {"error": {"message", "type", "param": null, "code",
/// "status"}}`; `status` defaults to the one `type` stands for (500 when it is not OpenAI's).
#[pyfunction(name = "error_event")]
#[pyo3(signature = (message, r#type, code, status=None))]
fn py_error_event<'py>(
    py: Python<'py>,
    message: &str,
    r#type: &str,
    code: Option<&str>,
    status: Option<u16>,
) -> Bound<'py, PyBytes> {
    let status = status
        .or_else(|| kinds::status_for_error_type(r#type))
        .unwrap_or(ErrorKind::Internal.status());
    let mut out = Vec::with_capacity(96 + message.len());
    kinds::write_error_event(&mut out, message, status, r#type, code);
    PyBytes::new(py, &out)
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

/// AWS SigV4 signing of the gateway's upstream POSTs (Bedrock), byte-identical to botocore.
#[pyclass(module = "agentgateway._core", name = "SigV4Signer")]
pub struct PySigV4Signer {
    inner: sigv4::SigV4Signer,
    host: String,
    content_type: String,
}

#[pymethods]
impl PySigV4Signer {
    #[new]
    #[pyo3(signature = (region, service, host, content_type))]
    fn new(region: &str, service: &str, host: &str, content_type: &str) -> Self {
        Self {
            inner: sigv4::SigV4Signer::new(region, service),
            host: host.to_owned(),
            content_type: content_type.to_owned(),
        }
    }

    /// The header lines `X-Amz-Date`, `X-Amz-Security-Token` (with a session token) and
    /// `Authorization`, each ending with CRLF.
    #[pyo3(signature = (path, body, access_key, secret_key, session_token, amz_date=None))]
    #[allow(clippy::too_many_arguments)] // the Python signature
    fn headers<'py>(
        &mut self,
        py: Python<'py>,
        path: &str,
        body: &[u8],
        access_key: &str,
        secret_key: &str,
        session_token: Option<&str>,
        amz_date: Option<&str>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let bad = |s: &str| s.bytes().any(|b| b.is_ascii_control());
        if bad(access_key) || session_token.is_some_and(bad) || amz_date.is_some_and(bad) {
            return Err(Error::internal("AWS credentials contain control characters").into());
        }
        let now;
        let amz_date = match amz_date {
            Some(date) => date,
            None => {
                let seconds = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                now = sigv4::amz_date(seconds);
                &now
            }
        };
        let request = sigv4::Request {
            host: &self.host,
            path,
            content_type: &self.content_type,
            body,
        };
        let credentials = sigv4::Credentials {
            access_key,
            secret_key,
            session_token,
        };
        let signature = self.inner.sign(&request, &credentials, amz_date);
        let mut out = Vec::with_capacity(160 + signature.authorization.len());
        out.extend_from_slice(b"X-Amz-Date: ");
        out.extend_from_slice(signature.amz_date.as_bytes());
        out.extend_from_slice(b"\r\n");
        if let Some(token) = session_token.filter(|t| !t.is_empty()) {
            out.extend_from_slice(b"X-Amz-Security-Token: ");
            out.extend_from_slice(token.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"Authorization: ");
        out.extend_from_slice(signature.authorization.as_bytes());
        out.extend_from_slice(b"\r\n");
        Ok(PyBytes::new(py, &out))
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
    m.add_class::<PySigV4Signer>()?;
    m.add_function(wrap_pyfunction!(translate_response, m)?)?;
    m.add(
        "ERROR_KINDS",
        pyo3::types::PyTuple::new(m.py(), ErrorKind::ALL.iter().map(|k| k.name()))?,
    )?;
    m.add_function(wrap_pyfunction!(py_error_kind, m)?)?;
    m.add_function(wrap_pyfunction!(py_error_type_for_status, m)?)?;
    m.add_function(wrap_pyfunction!(py_error_event, m)?)?;
    m.add_function(wrap_pyfunction!(py_anthropic_error, m)?)?;
    m.add(
        "PROVIDERS",
        pyo3::types::PyTuple::new(m.py(), providers::PROVIDERS.iter().copied())?,
    )?;
    m.add(
        "CLIENT_APIS",
        pyo3::types::PyTuple::new(m.py(), providers::CLIENT_APIS.iter().copied())?,
    )?;
    Ok(())
}
