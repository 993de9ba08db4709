"""The metadata that travels with every converted model (a sidecar JSON).

The device refuses a model whose metadata does not match the DSP it runs
(feature version, sample rate, hop, bands, look-ahead), so that a model can
never run on features it was not trained on.
"""

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edge.dsp import constants as dsp
from edge.errors import ModelError

METADATA_SCHEMA = 1
#: The shipped model: what `denoise`, the daemon's built-in config and the evaluation use when none is named.
DEFAULT_MODEL_PATH = Path(__file__).resolve().parents[2] / "models" / "lite" / "percepnet_lite.tflite"
#: The largest model file accepted: the shipped int8 lite model is 1.3 MB and a PercepNet-size network is a few
#: MB in any precision; a file this large is the wrong file, refused before a byte is hashed or mapped.
MAX_MODEL_BYTES = 64 << 20
#: The sidecar JSON is about 4 KB.
MAX_METADATA_BYTES = 1 << 20
#: Bytes hashed at a time: the hash's memory does not grow with the file.
HASH_CHUNK_BYTES = 1 << 20


def dsp_signature(n_features=dsp.N_FEATURES):
    """What a model must agree on with the DSP, as a dict (``n_features``: 70, 138 for a joint echo model, 172
    for a floor model)."""
    return {"feature_version": dsp.FEATURE_VERSION, "sample_rate_hz": dsp.SAMPLE_RATE_HZ,
            "hop_samples": dsp.HOP_SAMPLES, "n_bands": dsp.N_BANDS, "n_features": int(n_features),
            "lookahead_frames": dsp.LOOKAHEAD_FRAMES}


#: Feature widths a model may take: the 70 features, those and the 68 far-end inputs (feature version 2), or
#: those and the 34 noise-floor inputs (version 3).
MODEL_FEATURE_WIDTHS = (dsp.N_FEATURES, dsp.N_JOINT_FEATURES, dsp.N_FLOOR_JOINT_FEATURES)
#: The first feature version that knows each width.
_WIDTH_SINCE_VERSION = {dsp.N_FEATURES: 1, dsp.N_JOINT_FEATURES: 2, dsp.N_FLOOR_JOINT_FEATURES: 3}


@dataclass
class ModelMetadata:
    """Self-description of a converted model (see ``converter`` for how it is filled)."""

    schema: int
    name: str
    size: str
    dsp: dict                       # dsp_signature() at conversion time
    band_layout: list               # band centre bins
    quantization: str               # "int8"; comparison variants "float32", "int16x8", "dynamic-range"
    inputs: dict                    # name -> {"shape", "scale", "zero_point"}
    outputs: dict                   # role (gain, strength, vad, new_<state>) -> signature output name
    states: list                    # state names in input order
    weights: int
    model_bytes: int
    sha256: str
    training_data: str
    verification: dict = field(default_factory=dict)

    def to_json(self):
        return json.dumps(asdict(self), indent=2)

    def mismatches(self):
        """Differences from the running DSP, as readable strings (empty when compatible)."""
        from edge.dsp.bands import band_centres_bins
        here = dsp_signature()
        version, width = self.dsp.get("feature_version"), self.dsp.get("n_features")
        problems = []
        if version not in dsp.COMPATIBLE_FEATURE_VERSIONS:
            problems.append(f"feature_version: model {version!r}, DSP {dsp.FEATURE_VERSION!r} (reads versions "
                            f"{', '.join(map(str, dsp.COMPATIBLE_FEATURE_VERSIONS))})")
        elif width not in MODEL_FEATURE_WIDTHS or version < _WIDTH_SINCE_VERSION[width]:
            problems.append(f"n_features: model {width!r} at feature version {version!r}; the DSP computes "
                            f"{dsp.N_FEATURES}, {dsp.N_JOINT_FEATURES} from version 2 on and "
                            f"{dsp.N_FLOOR_JOINT_FEATURES} from version 3 on")
        problems += [f"{key}: model {self.dsp.get(key)!r}, DSP {value!r}" for key, value in here.items()
                     if key not in ("feature_version", "n_features") and self.dsp.get(key) != value]
        if list(self.band_layout) != band_centres_bins().tolist():
            problems.append("band_layout: the model's band centres differ from the DSP's")
        return problems


#: The JSON type of every metadata field: a null or a wrong type is refused by name, before any use.
FIELD_TYPES = {"schema": int, "name": str, "size": str, "dsp": dict, "band_layout": list, "quantization": str,
               "inputs": dict, "outputs": dict, "states": list, "weights": int, "model_bytes": int, "sha256": str,
               "training_data": str, "verification": dict}


def _check_field_types(fields, meta_path):
    if not isinstance(fields, dict):
        raise ModelError(f"{meta_path}: corrupt metadata: the top level is not an object; re-run the converter")
    for name, kind in FIELD_TYPES.items():
        if name not in fields:
            continue                                 # a missing field: the dataclass names it
        value = fields[name]
        if value is None:
            raise ModelError(f"{meta_path}: corrupt metadata: '{name}' is null; re-run the converter")
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ModelError(f"{meta_path}: corrupt metadata: '{name}' is {type(value).__name__}, expected "
                                     f"{kind.__name__}; re-run the converter")
    # the tensor names are looked up and hashed: each must be a string
    names = {"inputs": lambda v: list(v), "outputs": lambda v: list(v) + list(v.values()), "states": lambda v: v}
    for name, items in names.items():
        if name in fields and not all(isinstance(item, str) for item in items(fields[name])):
            raise ModelError(f"{meta_path}: corrupt metadata: '{name}' must hold tensor names (strings); re-run "
                             "the converter")


def sidecar_path(model_path):
    return Path(model_path).with_suffix(".json")


def file_sha256(path):
    """The file's sha256, read in HASH_CHUNK_BYTES pieces (reading a 2 GB file whole peaked at 2.2 GB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while True:
            chunk = stream.read(HASH_CHUNK_BYTES)
            if not chunk:
                return digest.hexdigest()
            digest.update(chunk)


def load_metadata(model_path, check_dsp=True):
    """Read and check the sidecar of ``model_path``; raises ModelError with what to do."""
    model_path = Path(model_path)
    if model_path.is_dir():
        raise ModelError(f"{model_path}: a folder; name the model's .tflite file in it (see models/ for the shipped "
                         "ones)")
    if not model_path.is_file():
        raise ModelError(f"{model_path}: no such model file; see models/ for the shipped ones")
    if model_path.suffix != ".tflite":                # its .keras or .json sit beside it, and would "not match"
        raise ModelError(f"{model_path}: not a converted model (a .tflite file); name "
                         f"{model_path.with_suffix('.tflite').name} or another .tflite (the .keras is a training "
                         "checkpoint and the .json the metadata)")
    model_bytes = model_path.stat().st_size
    if model_bytes > MAX_MODEL_BYTES:
        raise ModelError(f"{model_path}: {model_bytes / 2**20:.0f} MiB, larger than any percepnet-edge model "
                         f"(at most {MAX_MODEL_BYTES >> 20} MiB; the shipped one is about 1.3 MB): refusing to "
                         "read it; name the converted .tflite file")
    meta_path = sidecar_path(model_path)
    if not meta_path.is_file():
        raise ModelError(f"{meta_path}: the model's metadata is missing; re-run the converter "
                                 "(python -m converter) to produce the model and its metadata together")
    if meta_path.stat().st_size > MAX_METADATA_BYTES:
        raise ModelError(f"{meta_path}: larger than {MAX_METADATA_BYTES >> 20} MiB, so not a model's metadata "
                         "(about 4 KB); re-run the converter")
    try:
        fields = json.loads(meta_path.read_text())
        _check_field_types(fields, meta_path)
        metadata = ModelMetadata(**fields)
    except (ValueError, TypeError) as exc:              # JSON errors, unknown or missing fields, bad bytes
        raise ModelError(f"{meta_path}: corrupt metadata ({exc}); re-run the converter") from None
    except OSError as exc:
        raise ModelError(f"{meta_path}: cannot read the model's metadata ({exc.strerror or exc}); check its "
                         "permissions (the service runs as its own user, in the audio group)") from None
    if metadata.schema != METADATA_SCHEMA:
        raise ModelError(f"{meta_path}: metadata schema {metadata.schema}, this build reads "
                                 f"{METADATA_SCHEMA}; re-run the converter")
    try:
        actual = file_sha256(model_path)
    except OSError as exc:
        raise ModelError(f"{model_path}: cannot read the model ({exc.strerror or exc}); check its permissions (the "
                         "service runs as its own user, in the audio group)") from None
    if actual != metadata.sha256:
        raise ModelError(f"{model_path}: sha256 {actual[:12]}... does not match its metadata "
                                 f"({metadata.sha256[:12]}...): the file is corrupt or was replaced")
    if check_dsp:
        problems = metadata.mismatches()
        if problems:
            raise ModelError(f"{model_path} was made for a different DSP and cannot run here: "
                                     + "; ".join(problems) + ". Convert a model trained on this feature version.")
    return metadata
