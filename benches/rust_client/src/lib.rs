//! `HyperClient(url).post(body)`: one POST with hyper's pooled HTTP/1.1 client on a one-thread tokio
//! runtime, awaited from asyncio through pyo3-async-runtimes; returns `(status, body)`.
//! This is the design the gateway did not take (see benches/README.md): it exists to be measured.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

#[pyclass]
struct HyperClient {
    client: Client<HttpConnector, Full<Bytes>>,
    uri: hyper::Uri,
}

#[pymethods]
impl HyperClient {
    #[new]
    fn new(url: &str) -> PyResult<Self> {
        // One worker thread, as a fair match for the gateway's single event loop thread. Only the
        // first client's builder is used: the runtime is created once, on first use.
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(1).enable_all();
        pyo3_async_runtimes::tokio::init(builder);
        let uri = url
            .parse()
            .map_err(|e| PyValueError::new_err(format!("{e}")))?;
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            uri,
        })
    }

    fn post<'py>(&self, py: Python<'py>, body: Vec<u8>) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client.clone();
        let uri = self.uri.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let request = hyper::Request::post(uri)
                .header("content-type", "application/json")
                .header("authorization", "Bearer sk-bench")
                .body(Full::new(Bytes::from(body)))
                .map_err(|e| PyValueError::new_err(format!("{e}")))?;
            let response = client
                .request(request)
                .await
                .map_err(|e| PyOSError::new_err(format!("{e}")))?;
            let status = response.status().as_u16();
            let answer = response
                .into_body()
                .collect()
                .await
                .map_err(|e| PyOSError::new_err(format!("{e}")))?
                .to_bytes();
            Python::attach(|py| -> PyResult<Py<PyAny>> {
                Ok((status, PyBytes::new(py, &answer))
                    .into_pyobject(py)?
                    .into_any()
                    .unbind())
            })
        })
    }
}

#[pymodule]
fn agentgateway_bench_hyper(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<HyperClient>()
}
