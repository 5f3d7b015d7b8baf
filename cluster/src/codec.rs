//! Plan codecs that carry the model fingerprint with every crossflow function.
//!
//! Ballista ships a plan's scalar functions by name. These codecs wrap
//! Ballista's own and add, to each crossflow function they encode, the
//! fingerprint of the model it is bound to; decoding checks it against the
//! model this node loaded, so a plan made for another model (or other
//! options) is refused, never silently scored with the wrong one. The
//! client's plan is checked by the scheduler, the scheduler's by each executor.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{
    AggregateUDF, Extension, HigherOrderUDF, LogicalPlan, ScalarUDF, WindowUDF,
};
use datafusion::physical_expr_common::physical_expr::proto_decode::PhysicalExprDecodeCtx;
use datafusion::physical_expr_common::physical_expr::proto_encode::PhysicalExprEncodeCtx;
use datafusion::physical_plan::{ExecutionPlan, PhysicalExpr};
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};

use crossflow_udfs::bound_model;

use crate::functions::ClusterFunctions;

/// What precedes the fingerprint in an encoded crossflow function.
const TAG: &str = "crossflow-model-fingerprint:";

/// A Ballista codec (`C`: logical or physical) with crossflow's functions
/// encoded with their model fingerprints.
#[derive(Debug)]
pub struct FingerprintCodec<C: ?Sized> {
    inner: Arc<C>,
    functions: Arc<ClusterFunctions>,
}

impl<C: ?Sized> FingerprintCodec<C> {
    /// Wraps `inner`, checking plans against `functions`' models.
    pub fn new(inner: Arc<C>, functions: Arc<ClusterFunctions>) -> Self {
        Self { inner, functions }
    }

    /// Writes the fingerprint of the model a crossflow function is bound to;
    /// `false` for a function of no model and for other functions.
    fn encode_fingerprint(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> bool {
        match bound_model(node) {
            Some((_, fingerprint)) => {
                buf.extend_from_slice(TAG.as_bytes());
                buf.extend_from_slice(fingerprint.as_str().as_bytes());
                true
            }
            None => false,
        }
    }

    /// This node's function `name` after checking the plan's fingerprint in
    /// `buf` (missing or wrong: an error); `None` when `name` is not one of
    /// crossflow's functions or `buf` is another codec's payload.
    fn decode_fingerprint(&self, name: &str, buf: &[u8]) -> Option<Result<Arc<ScalarUDF>>> {
        self.functions.get(name)?;
        let sent = match buf.strip_prefix(TAG.as_bytes()) {
            Some(fingerprint) => std::str::from_utf8(fingerprint).ok(),
            None if buf.is_empty() => None,
            None => return None,
        };
        Some(self.functions.checked(name, sent))
    }
}

/// The methods both codecs share: crossflow functions with their
/// fingerprints, every other function as the wrapped codec does it.
macro_rules! function_methods {
    () => {
        fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
            match self.decode_fingerprint(name, buf) {
                Some(checked) => checked,
                None => self.inner.try_decode_udf(name, buf),
            }
        }

        fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
            if self.encode_fingerprint(node, buf) {
                return Ok(());
            }
            self.inner.try_encode_udf(node, buf)
        }

        fn try_decode_higher_order_function(
            &self,
            name: &str,
            buf: &[u8],
        ) -> Result<Arc<HigherOrderUDF>> {
            self.inner.try_decode_higher_order_function(name, buf)
        }

        fn try_encode_higher_order_function(
            &self,
            node: &HigherOrderUDF,
            buf: &mut Vec<u8>,
        ) -> Result<()> {
            self.inner.try_encode_higher_order_function(node, buf)
        }

        fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
            self.inner.try_decode_udaf(name, buf)
        }

        fn try_encode_udaf(&self, node: &AggregateUDF, buf: &mut Vec<u8>) -> Result<()> {
            self.inner.try_encode_udaf(node, buf)
        }

        fn try_decode_udwf(&self, name: &str, buf: &[u8]) -> Result<Arc<WindowUDF>> {
            self.inner.try_decode_udwf(name, buf)
        }

        fn try_encode_udwf(&self, node: &WindowUDF, buf: &mut Vec<u8>) -> Result<()> {
            self.inner.try_encode_udwf(node, buf)
        }
    };
}

impl LogicalExtensionCodec for FingerprintCodec<dyn LogicalExtensionCodec> {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension> {
        self.inner.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        self.inner
            .try_decode_table_provider(buf, table_ref, schema, ctx)
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        self.inner.try_encode_table_provider(table_ref, node, buf)
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn FileFormatFactory>> {
        self.inner.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> Result<()> {
        self.inner.try_encode_file_format(buf, node)
    }

    function_methods!();
}

impl PhysicalExtensionCodec for FingerprintCodec<dyn PhysicalExtensionCodec> {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.inner.try_decode(buf, inputs, ctx, proto_converter)
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        self.inner.try_encode(node, buf, proto_converter)
    }

    function_methods!();

    fn try_decode_expr(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn PhysicalExpr>],
        ctx: &PhysicalExprDecodeCtx<'_>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        self.inner.try_decode_expr(buf, inputs, ctx)
    }

    fn try_encode_expr(
        &self,
        node: &Arc<dyn PhysicalExpr>,
        buf: &mut Vec<u8>,
        ctx: &PhysicalExprEncodeCtx<'_>,
    ) -> Result<()> {
        self.inner.try_encode_expr(node, buf, ctx)
    }
}
