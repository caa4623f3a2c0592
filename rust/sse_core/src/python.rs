//! The `agentgateway._core` extension module: a thin binding over the pure-Rust core.
//! Errors are converted in one place (`From<CoreError> for PyErr`), and every entry point runs
//! under the panic guard (`guard.rs`), so a bug hit by one stream raises `CoreError` for that
//! stream only instead of pyo3's `PanicException` (a `BaseException` that would escape the
//! gateway's handlers); the error names what failed, and a stateful object that panicked is
//! poisoned: it refuses further calls, and its getters report it as failed.

use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::error::CoreError as Error;
use crate::error_kind::{self as kinds, ErrorKind};
use crate::framing::http1;
use crate::guard::{self, guarded, Poison};
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

const ERROR_WRITER: &str = "the error event writer";
const ERROR_VOCABULARY: &str = "the error vocabulary";
const RESPONSE_PARSER: &str = "the HTTP/1.1 response parser";
const SIGNER: &str = "the SigV4 signer";

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
    /// What this translator is called in an error ("the Bedrock eventstream translator").
    name: &'static str,
    /// A panic left `inner` in an unknown state: further calls are refused.
    poison: Poison,
    /// The error of that panic, reported by the `error` getter.
    broken: Option<String>,
}

impl PyStreamTranslator {
    fn call<'py>(
        &mut self,
        py: Python<'py>,
        f: impl FnOnce(&mut providers::StreamTranslator, &mut Vec<u8>) -> Result<(), Error>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        self.out.clear();
        let (inner, out) = (&mut self.inner, &mut self.out);
        let result = self.poison.guarded(self.name, || f(inner, out));
        if let Err(err) = &result {
            self.note_panic(err);
        }
        result?;
        let bytes = PyBytes::new(py, &self.out);
        if self.out.capacity() > MAX_KEPT_CAPACITY {
            self.out = Vec::new();
        }
        Ok(bytes)
    }

    #[cold]
    fn note_panic(&mut self, err: &Error) {
        if self.poison.is_poisoned() && self.broken.is_none() {
            self.broken = Some(err.to_string());
        }
    }

    /// A fact read from the translator; `broken` once it panicked (now or earlier): a getter
    /// never raises, so the gateway's clean-up after a failed stream still reads its facts.
    fn fact<T>(&mut self, broken: T, f: impl FnOnce(&providers::StreamTranslator) -> T) -> T {
        let inner = &self.inner;
        match self.poison.guarded_value(self.name, || f(inner)) {
            Ok(value) => value,
            Err(err) => {
                self.note_panic(&err);
                broken
            }
        }
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
        let name = guard::stream_translator_name(provider);
        let mut inner = guarded(name, || {
            providers::new_stream_translator_for(provider, client_model, include_usage, api)
        })?;
        if let Some(index) = choice {
            if !guarded(name, || Ok(inner.as_choice(index, completion_id)))? {
                return Err(CoreError::new_err(format!(
                    "the {provider} translator for {client_api} clients cannot write one choice of a merged answer"
                )));
            }
        }
        Ok(Self {
            inner,
            out: Vec::new(),
            name,
            poison: Poison::default(),
            broken: None,
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
    /// None once the translator panicked.
    #[getter]
    fn usage(&mut self) -> Option<UsageTuple> {
        self.fact(None, |inner| usage_tuple(inner.usage()))
    }

    /// The last non-null `finish_reason`, or None.
    #[getter]
    fn finish_reason(&mut self) -> Option<String> {
        self.fact(None, |inner| inner.finish_reason().map(str::to_owned))
    }

    /// The first error recorded (upstream error, failed chunk, truncation; the panic's error once
    /// the translator panicked), or None.
    #[getter]
    fn error(&mut self) -> Option<String> {
        let error = self.fact(None, |inner| inner.error().map(str::to_owned));
        error.or_else(|| self.broken.clone())
    }

    /// Whether `data: [DONE]` was sent.
    #[getter]
    fn done(&mut self) -> bool {
        self.fact(false, providers::StreamTranslator::done)
    }

    /// Whether an untranslatable upstream chunk ended the stream with an error frame (true once
    /// the translator panicked).
    #[getter]
    fn failed(&mut self) -> bool {
        self.fact(true, providers::StreamTranslator::failed) || self.poison.is_poisoned()
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
    let (out, usage) = guarded(guard::response_translator_name(provider), || {
        providers::translate_response_for(provider, body, client_model, api)
    })?;
    Ok((PyBytes::new(py, &out), usage_tuple(usage)))
}

/// `(status, OpenAI type, code)` of the error kind `name` (see `error_kind.rs`).
#[pyfunction(name = "error_kind")]
fn py_error_kind(name: &str) -> PyResult<(u16, &'static str, Option<&'static str>)> {
    let kind = guarded(ERROR_VOCABULARY, || {
        ErrorKind::from_name(name).ok_or_else(|| Error::UnknownErrorKind(name.to_owned()))
    })?;
    Ok((kind.status(), kind.openai_type(), kind.code()))
}

/// The OpenAI (or Anthropic) error `type` for an HTTP status.
#[pyfunction(name = "error_type_for_status")]
#[pyo3(signature = (status, client_api="openai"))]
fn py_error_type_for_status(status: u16, client_api: &str) -> PyResult<&'static str> {
    let api = self::client_api(client_api)?;
    Ok(guarded(ERROR_VOCABULARY, || {
        Ok(match api {
            ClientApi::OpenAI => kinds::error_type_for_status(status),
            ClientApi::Anthropic => kinds::anthropic_error_type_for_status(status),
        })
    })?)
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
) -> PyResult<Bound<'py, PyBytes>> {
    let out = guarded(ERROR_WRITER, || {
        let mut out = Vec::with_capacity(96 + message.len());
        if event {
            kinds::write_anthropic_error_event(&mut out, message, status);
        } else {
            kinds::write_anthropic_error(&mut out, message, status);
        }
        Ok(out)
    })?;
    Ok(PyBytes::new(py, &out))
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
) -> PyResult<Bound<'py, PyBytes>> {
    let out = guarded(ERROR_WRITER, || {
        let status = status
            .or_else(|| kinds::status_for_error_type(r#type))
            .unwrap_or(ErrorKind::Internal.status());
        let mut out = Vec::with_capacity(96 + message.len());
        kinds::write_error_event(&mut out, message, status, r#type, code);
        Ok(out)
    })?;
    Ok(PyBytes::new(py, &out))
}

type HeadTuple<'py> = (u16, Vec<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)>);

/// Frames one upstream HTTP/1.1 response: one `feed` per network read.
#[pyclass(module = "agentgateway._core", name = "ResponseParser")]
pub struct PyResponseParser {
    inner: http1::ResponseParser,
    /// Scratch buffer for the body bytes of one call.
    body: Vec<u8>,
    /// A panic left `inner` in an unknown state: further calls raise, and the connection is
    /// never reused (`complete` and `keep_alive` are false).
    poison: Poison,
}

#[pymethods]
impl PyResponseParser {
    #[new]
    fn new() -> PyResult<Self> {
        Ok(Self {
            inner: guarded(RESPONSE_PARSER, || Ok(http1::ResponseParser::new()))?,
            body: Vec::new(),
            poison: Poison::default(),
        })
    }

    /// Parse one read: `(head if it completed now, else None; decoded body bytes of this read)`.
    /// A read that is all body (`Content-Length`, close-delimited, one chunk's data) comes back as
    /// the same bytes object, not copied (issue 22).
    #[allow(clippy::type_complexity)]
    fn feed<'py>(
        &mut self,
        py: Python<'py>,
        data: &Bound<'py, PyBytes>,
    ) -> PyResult<(Option<HeadTuple<'py>>, Bound<'py, PyBytes>)> {
        self.body.clear();
        let (inner, body) = (&mut self.inner, &mut self.body);
        let input = data.as_bytes();
        let (head, read) = self
            .poison
            .guarded(RESPONSE_PARSER, || inner.feed_borrowed(input, body))?;
        let head = head.map(|head| {
            let headers = head
                .headers
                .iter()
                .map(|(name, value)| (PyBytes::new(py, name), PyBytes::new(py, value)))
                .collect();
            (head.status, headers)
        });
        let bytes = match read {
            http1::BodyBytes::Input(piece) if piece.len() == input.len() => data.clone(),
            http1::BodyBytes::Input(piece) => PyBytes::new(py, piece),
            http1::BodyBytes::Buffer => PyBytes::new(py, &self.body),
        };
        if self.body.capacity() > MAX_KEPT_CAPACITY {
            self.body = Vec::new();
        }
        Ok((head, bytes))
    }

    /// The connection closed: a close-delimited body ends; anything else unfinished raises.
    fn finish(&mut self) -> PyResult<()> {
        let inner = &mut self.inner;
        self.poison.guarded(RESPONSE_PARSER, || inner.finish())?;
        Ok(())
    }

    /// Whether the whole response has been read (false once the parser panicked).
    #[getter]
    fn complete(&mut self) -> bool {
        let inner = &self.inner;
        self.poison
            .guarded_value(RESPONSE_PARSER, || inner.is_complete())
            .unwrap_or(false)
    }

    /// Whether the connection may carry another request now (false once the parser panicked).
    #[getter]
    fn keep_alive(&mut self) -> bool {
        let inner = &self.inner;
        self.poison
            .guarded_value(RESPONSE_PARSER, || inner.keep_alive())
            .unwrap_or(false)
    }
}

/// AWS SigV4 signing of the gateway's upstream POSTs (Bedrock), byte-identical to botocore.
#[pyclass(module = "agentgateway._core", name = "SigV4Signer")]
pub struct PySigV4Signer {
    inner: sigv4::SigV4Signer,
    host: String,
    content_type: String,
    /// A panic left the signing-key cache in an unknown state: further calls raise.
    poison: Poison,
}

#[pymethods]
impl PySigV4Signer {
    #[new]
    #[pyo3(signature = (region, service, host, content_type))]
    fn new(region: &str, service: &str, host: &str, content_type: &str) -> PyResult<Self> {
        let inner = guarded(SIGNER, || Ok(sigv4::SigV4Signer::new(region, service)))?;
        Ok(Self {
            inner,
            host: host.to_owned(),
            content_type: content_type.to_owned(),
            poison: Poison::default(),
        })
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
        let (inner, host, content_type) = (&mut self.inner, &self.host, &self.content_type);
        let out = self.poison.guarded(SIGNER, || {
            sign_headers(
                inner,
                host,
                content_type,
                path,
                body,
                (access_key, secret_key, session_token),
                amz_date,
            )
        })?;
        Ok(PyBytes::new(py, &out))
    }
}

/// The signed header lines of `PySigV4Signer.headers` (run under the panic guard).
fn sign_headers(
    signer: &mut sigv4::SigV4Signer,
    host: &str,
    content_type: &str,
    path: &str,
    body: &[u8],
    (access_key, secret_key, session_token): (&str, &str, Option<&str>),
    amz_date: Option<&str>,
) -> Result<Vec<u8>, Error> {
    let bad = |s: &str| s.bytes().any(|b| b.is_ascii_control());
    if bad(access_key) || session_token.is_some_and(bad) || amz_date.is_some_and(bad) {
        return Err(Error::internal(
            SIGNER,
            "the AWS credentials contain control characters",
        ));
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
        host,
        path,
        content_type,
        body,
    };
    let credentials = sigv4::Credentials {
        access_key,
        secret_key,
        session_token,
    };
    let signature = signer.sign(&request, &credentials, amz_date);
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
    Ok(out)
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
    m.add_function(wrap_pyfunction!(
        crate::tokenize::python::count_chat_tokens,
        m
    )?)?;
    m.add_function(wrap_pyfunction!(
        crate::tokenize::python::load_tokenizer,
        m
    )?)?;
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
