//! `embed(text)`: a bi-encoder's unit vector of each text, as the dedupe
//! job embeds, `FixedSizeList<Float32>` of the model's dimension.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crossflow::BiEncoder;
use datafusion::arrow::array::{ArrayRef, FixedSizeListArray, Float32Array};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::plan_err;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::FunctionError;
use crate::args;
use crate::functions::off_async_threads;

/// The SQL name of [`EmbedUdf`].
pub const EMBED: &str = "embed";

/// `embed(text)` bound to one bi-encoder.
pub struct EmbedUdf {
    model: Arc<BiEncoder>,
    signature: Signature,
    return_type: DataType,
}

/// `embed` bound to `model`.
pub fn embed_udf(model: Arc<BiEncoder>) -> ScalarUDF {
    ScalarUDF::new_from_impl(EmbedUdf {
        return_type: vector_type(model.dimension()),
        signature: Signature::user_defined(Volatility::Immutable),
        model,
    })
}

/// `FixedSizeList<Float32>` of `dimension` (nullable items, as DataFusion's
/// array literals are).
pub fn vector_type(dimension: usize) -> DataType {
    DataType::FixedSizeList(
        Arc::new(Field::new_list_field(DataType::Float32, true)),
        dimension as i32,
    )
}

impl EmbedUdf {
    /// The bi-encoder the function runs.
    pub fn model(&self) -> &Arc<BiEncoder> {
        &self.model
    }

    fn compute(&self, text: &ColumnarValue) -> Result<ArrayRef> {
        let texts = args::texts(EMBED, text)?;
        let embeddings = self
            .model
            .embed(&texts)
            .map_err(|e| FunctionError::wrap(EMBED, e))?;
        let DataType::FixedSizeList(field, dimension) = &self.return_type else {
            unreachable!("embed returns a fixed-size list");
        };
        let values = Arc::new(Float32Array::from(embeddings.data));
        let nulls = NullBuffer::from(embeddings.valid);
        let vectors = FixedSizeListArray::try_new(field.clone(), *dimension, values, Some(nulls))?;
        Ok(Arc::new(vectors))
    }
}

impl std::fmt::Debug for EmbedUdf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbedUdf")
            .field("model", &self.model.name())
            .finish()
    }
}

impl PartialEq for EmbedUdf {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.model, &other.model)
    }
}

impl Eq for EmbedUdf {}

impl Hash for EmbedUdf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (Arc::as_ptr(&self.model) as usize).hash(state);
    }
}

impl ScalarUDFImpl for EmbedUdf {
    fn name(&self) -> &str {
        EMBED
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(self.return_type.clone())
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [text] => Ok(vec![args::coerce_text(EMBED, 1, text)?]),
            _ => plan_err!("{EMBED} takes (text), got {} arguments", arg_types.len()),
        }
    }

    fn invoke_with_args(&self, call: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let array = off_async_threads(|| self.compute(&call.args[0]))?;
        args::result(array, &call.args)
    }
}
