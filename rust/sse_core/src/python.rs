//! The `agentgateway._core` extension module: a thin binding over the pure-Rust core.
//! Errors are converted in one place (`From<CoreError> for PyErr`), and every entry point runs
//! under the panic guard (`guard.rs`), so a bug hit by one stream raises `CoreError` for that
//! stream only instead of pyo3's `PanicException` (a `BaseException` that would escape the
//! gateway's handlers); the error names what failed, and a stateful object that panicked is
//! poisoned: it refuses further calls, and its getters report it as failed.

use pyo3::create_exception;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyFloat, PyTuple};

use crate::error::CoreError as Error;
use crate::error_kind::{self as kinds, ErrorKind};
use crate::framing::http1;
use crate::guard::{self, guarded, Poison};
use crate::providers::{self, ClientApi, Usage};
use crate::sigv4;
use crate::stats;

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

// -- telemetry: the metric updates and the access log's text line (issue 18, stats.rs) ----------

const STATS_TABLE: &str = "the stats table";
const ACCESS_LOG: &str = "the access-log writer";

/// The worker's table memory, as bound by `StatsTable.bind`.
struct Mapped {
    /// A ctypes `c_ubyte` array made by `from_buffer` over the caller's buffer (the worker's
    /// mmap): while it lives it holds a buffer export of that object.
    _view: Py<PyAny>,
    /// `ctypes.addressof(view)`: 8-aligned (checked in `bind`).
    address: usize,
    /// `ctypes.sizeof(view) / 8`.
    len: usize,
}

impl Mapped {
    fn values(&mut self) -> &mut [f64] {
        if self.len == 0 || self.address == 0 {
            return &mut [];
        }
        // SAFETY: `address .. address + 8 * len` is the memory of `_view` (its `addressof` and
        // `sizeof`, read in `bind`; the address checked non-null and 8-aligned), and it stays
        // valid while `_view` lives, which is as long as this `Mapped`: `_view` was made by
        // ctypes' `from_buffer`, which holds a buffer export of the object it views, and CPython
        // refuses to close or resize an mmap (or resize a bytearray) while an export exists
        // (`BufferError`), so the memory cannot be unmapped or moved under us. Every f64 bit
        // pattern is valid. The slice is the only Rust reference to that memory and lives only
        // for this `&mut self` borrow (the pyclass borrow is exclusive), during which no Python
        // code runs (the GIL is held and nothing calls back into Python): the `memoryview`
        // through which Python updates other slots of the same table cannot interleave.
        unsafe { std::slice::from_raw_parts_mut(self.address as *mut f64, self.len) }
    }
}

/// The worker's table of metric values and the slots of each label group (`telemetry/_table.py`,
/// `_metrics.py`): one `record` call per settled exchange.
#[pyclass(module = "agentgateway._core", name = "StatsTable")]
pub struct PyStatsTable {
    mapped: Option<Mapped>,
    groups: Vec<stats::GroupSlots>,
}

fn out_of_range(err: stats::OutOfRange) -> Error {
    Error::internal(STATS_TABLE, err)
}

#[pymethods]
impl PyStatsTable {
    #[new]
    fn new() -> PyResult<Self> {
        Ok(guarded(STATS_TABLE, || {
            Ok(Self {
                mapped: None,
                groups: Vec::new(),
            })
        })?)
    }

    /// Writes go to `buffer`'s memory (a writable buffer: the worker's mmap), viewed as f64s;
    /// the view holds an export of it until `unbind` (or another `bind`).
    fn bind(&mut self, py: Python<'_>, buffer: &Bound<'_, PyAny>) -> PyResult<()> {
        self.mapped = None;
        let ctypes = py.import("ctypes")?;
        let size: usize = buffer.len()?;
        let array_type = ctypes.getattr("c_ubyte")?.mul(size)?;
        let view = array_type.call_method1("from_buffer", (buffer,))?;
        let address: usize = ctypes.call_method1("addressof", (&view,))?.extract()?;
        let bytes: usize = ctypes.call_method1("sizeof", (&view,))?.extract()?;
        let view = view.unbind();
        self.mapped = Some(guarded(STATS_TABLE, || {
            if address == 0 || !address.is_multiple_of(std::mem::align_of::<f64>()) {
                return Err(Error::internal(
                    STATS_TABLE,
                    "the buffer is not 8-byte aligned",
                ));
            }
            Ok(Mapped {
                _view: view,
                address,
                len: bytes / std::mem::size_of::<f64>(),
            })
        })?);
        Ok(())
    }

    /// Drops the view (the buffer may be closed after this); later writes fail until `bind`.
    fn unbind(&mut self) -> PyResult<()> {
        let mapped = &mut self.mapped;
        Ok(guarded(STATS_TABLE, || {
            *mapped = None;
            Ok(())
        })?)
    }

    /// How many f64 values the bound buffer holds (0 when unbound).
    fn __len__(&self) -> PyResult<usize> {
        let mapped = &self.mapped;
        Ok(guarded(STATS_TABLE, || {
            Ok(mapped.as_ref().map_or(0, |m| m.len))
        })?)
    }

    /// A label group's slots: the request counter, the HTTP duration histogram, and (when the
    /// request reached a backend) `(genai duration, input, output, cache read, cache write
    /// tokens, ttft, tpot, cost, unpriced)`; `counters`: other counters each exchange of the
    /// group adds one to (its attempt's). Returns its index for `record`.
    #[pyo3(signature = (requests, duration, genai=None, counters=None))]
    #[allow(clippy::type_complexity)]
    fn add_group(
        &mut self,
        requests: usize,
        duration: usize,
        genai: Option<(
            usize,
            usize,
            usize,
            usize,
            usize,
            usize,
            usize,
            usize,
            usize,
        )>,
        counters: Option<Vec<usize>>,
    ) -> PyResult<usize> {
        let groups = &mut self.groups;
        Ok(guarded(STATS_TABLE, || {
            let genai = genai.map(
                |(duration, input, output, cached, written, ttft, tpot, cost, unpriced)| {
                    stats::GenAiSlots {
                        duration,
                        tokens: [input, output, cached, written],
                        ttft,
                        tpot,
                        cost,
                        unpriced,
                    }
                },
            );
            let slots = stats::GroupSlots::new(requests, duration, genai)
                .and_then(|slots| slots.with_counters(counters.as_deref().unwrap_or_default()))
                .ok_or_else(|| Error::internal(STATS_TABLE, "a slot past the address space"))?;
            groups.push(slots);
            Ok(groups.len() - 1)
        })?)
    }

    /// Forgets every group (their indexes are no longer valid).
    fn clear_groups(&mut self) -> PyResult<()> {
        let groups = &mut self.groups;
        Ok(guarded(STATS_TABLE, || {
            groups.clear();
            Ok(())
        })?)
    }

    /// How many groups there are.
    #[getter]
    fn groups(&self) -> PyResult<usize> {
        let groups = &self.groups;
        Ok(guarded(STATS_TABLE, || Ok(groups.len()))?)
    }

    /// One settled exchange of group `group`: `input` None when there was no usage (`output`,
    /// `cached`, `cache_write` are then ignored), `cost` None when unpriced.
    #[pyo3(signature = (group, elapsed, streamed, ttft, input, output, cached, cache_write, cost))]
    #[allow(clippy::too_many_arguments)] // the Python signature: plain numbers, no tuple per call
    fn record(
        &mut self,
        group: usize,
        elapsed: f64,
        streamed: bool,
        ttft: Option<f64>,
        input: Option<f64>,
        output: f64,
        cached: f64,
        cache_write: f64,
        cost: Option<f64>,
    ) -> PyResult<()> {
        let (mapped, groups) = (&mut self.mapped, &self.groups);
        Ok(guarded(STATS_TABLE, || {
            let slots = groups
                .get(group)
                .ok_or_else(|| Error::internal(STATS_TABLE, "no such group"))?;
            let values = mapped.as_mut().map_or(&mut [][..], Mapped::values);
            let observation = stats::Observation {
                elapsed,
                streamed,
                ttft,
                tokens: input.map(|input| stats::TokenCounts {
                    input,
                    output,
                    cached,
                    cache_write,
                }),
                cost,
            };
            stats::record(values, slots, &observation).map_err(out_of_range)
        })?)
    }

    /// Adds `amount` to the value at `slot`.
    fn add(&mut self, slot: usize, amount: f64) -> PyResult<()> {
        let mapped = &mut self.mapped;
        Ok(guarded(STATS_TABLE, || {
            let values = mapped.as_mut().map_or(&mut [][..], Mapped::values);
            stats::add_checked(values, slot, amount).map_err(out_of_range)
        })?)
    }
}

/// The access log's lines waiting to be written, in `PIPE_BUF` batches, and its text line.
#[pyclass(module = "agentgateway._core", name = "AccessLogBatches")]
pub struct PyAccessLogBatches {
    batches: stats::Batches,
    clock: stats::Clock,
    /// Scratch for one line (a panic while writing it leaves the batches as they were).
    line: Vec<u8>,
}

/// The value of a Python `float` (not an `int`, nor a subclass: orjson writes those otherwise).
fn exact_float(value: &Bound<'_, PyAny>) -> PyResult<f64> {
    match value.cast_exact::<PyFloat>() {
        Ok(float) => Ok(float.value()),
        Err(_) => Err(PyTypeError::new_err("not a float")),
    }
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[pymethods]
impl PyAccessLogBatches {
    #[new]
    #[pyo3(signature = (batch_bytes=4096))]
    fn new(batch_bytes: usize) -> PyResult<Self> {
        Ok(guarded(ACCESS_LOG, || {
            Ok(Self {
                batches: stats::Batches::new(batch_bytes),
                clock: stats::Clock::default(),
                line: Vec::with_capacity(512),
            })
        })?)
    }

    /// Adds the text line of one request (stamped now, or at `millis` since the epoch); true
    /// when a full batch waits (`drain_full`).
    #[pyo3(signature = (request_id, upstream_id, caller, model, backend, attempts, status, input, output, cached, reasoning, cost, duration, ttft, error, millis=None))]
    #[allow(clippy::too_many_arguments)] // the Python signature: plain values, no tuple per call
    fn text(
        &mut self,
        request_id: &str,
        upstream_id: Option<&str>,
        caller: Option<&str>,
        model: Option<&str>,
        backend: Option<&str>,
        attempts: i64,
        status: i64,
        input: Option<i64>,
        output: i64,
        cached: i64,
        reasoning: i64,
        cost: Option<f64>,
        duration: f64,
        ttft: Option<f64>,
        error: Option<&str>,
        millis: Option<i64>,
    ) -> PyResult<bool> {
        let (batches, clock, line) = (&mut self.batches, &mut self.clock, &mut self.line);
        Ok(guarded(ACCESS_LOG, || {
            line.clear();
            let fields = stats::TextLine {
                request_id,
                upstream_id,
                caller,
                model,
                backend,
                attempts,
                status,
                tokens: input.map(|input| [input, output, cached, reasoning]),
                cost,
                duration,
                ttft,
                error,
            };
            stats::write_text_line(line, clock, millis.unwrap_or_else(now_millis), &fields);
            Ok(batches.push(line))
        })?)
    }

    /// Adds the JSON line of one request, byte for byte what orjson wrote of the same fields (floats
    /// after `round(x, 6)` for `duration` and `ttft`); true when a full batch waits. `cost`,
    /// `duration` and `ttft` must be floats (an int is a `TypeError`: orjson writes ints otherwise).
    #[pyo3(signature = (request_id, upstream_id, caller, model, backend, attempts, status, input, output, cached, reasoning, cost, duration, ttft, error, millis=None))]
    #[allow(clippy::too_many_arguments)] // the Python signature: plain values, no tuple per call
    fn json(
        &mut self,
        request_id: &str,
        upstream_id: Option<&str>,
        caller: Option<&str>,
        model: Option<&str>,
        backend: Option<&str>,
        attempts: i64,
        status: i64,
        input: Option<i64>,
        output: i64,
        cached: i64,
        reasoning: i64,
        cost: Option<&Bound<'_, PyAny>>,
        duration: &Bound<'_, PyAny>,
        ttft: Option<&Bound<'_, PyAny>>,
        error: Option<&str>,
        millis: Option<i64>,
    ) -> PyResult<bool> {
        let cost = cost.map(exact_float).transpose()?;
        let duration = exact_float(duration)?;
        let ttft = ttft.map(exact_float).transpose()?;
        let (batches, clock, line) = (&mut self.batches, &mut self.clock, &mut self.line);
        Ok(guarded(ACCESS_LOG, || {
            line.clear();
            let fields = stats::TextLine {
                request_id,
                upstream_id,
                caller,
                model,
                backend,
                attempts,
                status,
                tokens: input.map(|input| [input, output, cached, reasoning]),
                cost,
                duration,
                ttft,
                error,
            };
            stats::write_json_line(line, clock, millis.unwrap_or_else(now_millis), &fields);
            Ok(batches.push(line))
        })?)
    }

    /// Adds a line written elsewhere (JSON); true when a full batch waits.
    fn push(&mut self, line: &[u8]) -> PyResult<bool> {
        let batches = &mut self.batches;
        Ok(guarded(ACCESS_LOG, || Ok(batches.push(line)))?)
    }

    /// The closed batches, taken, oldest first (the open one stays): what a line that did not fit
    /// left to write at once.
    fn drain_full<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let batches = &mut self.batches;
        let out = guarded(ACCESS_LOG, || {
            let mut out = Vec::new();
            while let Some(batch) = batches.pop_full() {
                out.push(PyBytes::new(py, &batch));
            }
            Ok(out)
        })?;
        PyTuple::new(py, out)
    }

    /// Every batch, taken, in order (closed ones, then the open one); `()` when nothing waits.
    fn drain<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let batches = &mut self.batches;
        let out = guarded(ACCESS_LOG, || {
            let mut out = Vec::new();
            while let Some(batch) = batches.next() {
                out.push(PyBytes::new(py, batch));
                batches.consume();
            }
            Ok(out)
        })?;
        PyTuple::new(py, out)
    }

    /// Bytes waiting.
    fn __len__(&self) -> PyResult<usize> {
        let batches = &self.batches;
        Ok(guarded(ACCESS_LOG, || Ok(batches.len()))?)
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
    m.add_class::<PyStatsTable>()?;
    m.add_class::<PyAccessLogBatches>()?;
    m.add(
        "STATS_BUCKETS",
        pyo3::types::PyTuple::new(
            m.py(),
            stats::ALL_BUCKETS
                .iter()
                .map(|bounds| pyo3::types::PyTuple::new(m.py(), bounds.iter().copied()))
                .collect::<PyResult<Vec<_>>>()?,
        )?,
    )?;
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
