"""movierec: a TFX movie recommender (matrix factorization + content-based).

The repository keeps the design card's top-level folders (`pipeline/`, `components/`,
`serving/`) but installs them under one distribution namespace, so that generic names never
clash with other packages: `components/` is imported as `movierec.components`, and so on.
"""
import re
from pathlib import Path

from setuptools import setup

# The version lives in movierec/__init__.py; `movierec --version` reads it back from the
# installed package's metadata.
VERSION = re.search(r'^__version__ = "([^"]+)"', Path(__file__).with_name("movierec").joinpath(
    "__init__.py").read_text(), re.M).group(1)

# The one list of what movierec needs at run time: every distribution the pipeline, training,
# serving and CLI code import (tests/test_packaging.py checks it), pinned only where the code
# depends on one release line (TFX 1.16 and its TensorFlow 2.16); TFX pins the rest of its
# stack (TensorFlow, Beam, tf.Transform, ML Metadata).
INSTALL_REQUIRES = [
    "tfx[kfp]==1.16.0",
    "tensorflow",
    "tensorflow-transform",
    "tensorflow-data-validation",        # StatisticsGen's statistics options
    "tensorflow-metadata",
    "tfx-bsl",
    "ml-metadata",
    "apache-beam[aws]",                 # boto3: s3:// for Beam's file I/O
    "absl-py",
    "protobuf",
    "tf-keras",                         # Keras 2, as TFX 1.16's Trainer uses it
    "tensorflow-serving-api==2.16.1",   # PredictionService protos, gRPC stubs
    "tensorflow-io==0.37.1",            # s3:// for tf.io.gfile (TensorFlow 2.16 lacks it)
    "grpcio",
    "aiohttp",                          # `movierec serve` REST
    "prometheus-client",                # `movierec serve` metrics
    "numpy",
    "scipy",
    "threadpoolctl",                    # BLAS held to one thread while the MF solvers' row groups run
    "pyarrow",
    "matplotlib",                       # the evaluation report's plots
    "pyyaml",                           # movierec.yaml
    "dill",
    "pip",                              # the environment's installer (scripts/bootstrap.sh, Beam's stager)
]
EXTRAS_REQUIRE = {
    "test": [
        "pytest",
        "pytest-timeout",
        "hypothesis",
        "h2",              # the serving attack tests' raw HTTP/2 client
        "moto[server]",    # a loopback S3 server for the object-store tests
    ],
}

_SUBPACKAGES = {
    "movierec.pipeline": "pipeline",
    "movierec.components": "components",
    "movierec.components.data": "components/data",
    "movierec.components.movielens_example_gen": "components/movielens_example_gen",
    "movierec.components.strict_example_validator": "components/strict_example_validator",
    "movierec.components.mf": "components/mf",
    "movierec.components.content": "components/content",
    "movierec.components.ranking_evaluator": "components/ranking_evaluator",
    "movierec.components.atomic_pusher": "components/atomic_pusher",
    "movierec.serving": "serving",
}

setup(
    name="movierec",
    version=VERSION,
    description="Production-grade MovieLens recommender as a TFX pipeline",
    python_requires=">=3.10,<3.11",
    packages=["movierec", *_SUBPACKAGES],
    package_dir={"movierec": "movierec", **_SUBPACKAGES},
    package_data={"movierec.components": ["schema/*.pbtxt"]},
    include_package_data=True,
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={"console_scripts": ["movierec=movierec.cli:main"]},
)
