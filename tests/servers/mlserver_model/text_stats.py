"""A trivial MLServer custom runtime: for each text of a BYTES input, its length and a label.

It writes every request it decoded (input name, datatype, shape, texts) as one JSON line to
``$TEXT_STATS_RECORD``, so a test can check what arrived through the KServe v2 protocol.
"""
import json
import os

import numpy as np
from mlserver import MLModel
from mlserver.codecs import NumpyCodec, StringCodec
from mlserver.types import InferenceRequest, InferenceResponse


class TextStats(MLModel):
    async def load(self) -> bool:
        self._record = os.environ.get("TEXT_STATS_RECORD")
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        if len(payload.inputs) != 1 or payload.inputs[0].datatype != "BYTES":
            raise ValueError("text-stats takes exactly one BYTES input")
        request_input = payload.inputs[0]
        texts = StringCodec.decode_input(request_input)
        if self._record:
            with open(self._record, "a", encoding="utf-8") as f:
                f.write(json.dumps({"name": request_input.name, "datatype": request_input.datatype,
                                    "shape": list(request_input.shape), "texts": texts}) + "\n")
        chars = np.array([len(t) for t in texts], dtype=np.int64)
        return InferenceResponse(
            model_name=self.name,
            id=payload.id,
            outputs=[NumpyCodec.encode_output("chars", chars),
                     StringCodec.encode_output("label", ["long" if n > 40 else "short" for n in chars])],
        )
