"""crossflow: transformer cross-encoders over Arrow, from Python.

    >>> from crossflow import CrossEncoder
    >>> model = CrossEncoder()  # the bundled STS model (crossflow-models)
    >>> model.predict([("A man is playing a guitar.", "Someone plays an instrument.")])

`CrossEncoder` takes the arguments of sentence-transformers' `CrossEncoder`
where they mean the same (`predict`, `rank`) and Arrow arrays through the
Arrow PyCapsule interface (`score`, `nli`); `crossflow.datafusion.register`
adds the SQL functions to a datafusion-python `SessionContext`.
"""

from crossflow._install import refuse_other_crossflow

refuse_other_crossflow()

from crossflow._crossflow import CrossflowError, __version__  # noqa: E402
from crossflow.encoder import CrossEncoder  # noqa: E402

__all__ = ["CrossEncoder", "CrossflowError", "__version__"]
