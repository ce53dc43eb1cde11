# The pipeline image: Python 3.10, what the pipeline's commands need at the locked versions,
# and the movierec package. Kubeflow Pipelines / Vertex AI run every component in it as
#   python -m movierec.pipeline.kubeflow_v2_runner --executor_class_path ... (see docs/kubeflow.md)
# and it runs `movierec` itself:
#   docker build -t movierec:latest .
#   docker run --rm -v $PWD/data:/data -v $PWD/outputs:/outputs movierec:latest \
#       run --data-dir /data/ml-100k --output-dir /outputs
FROM python:3.10-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
WORKDIR /opt/movierec

# The movierec package and what it declares it needs at run time (setup.py INSTALL_REQUIRES:
# TFX with its Kubeflow V2 container entry point, TF Serving's API, tensorflow-io for
# TensorFlow's s3://, apache-beam[aws] for Beam's s3://, ...), every version pinned by
# requirements.lock (-c): 280 of the lock's 309 packages. Left out, 29: the test extra's
# pytest, pytest-timeout, hypothesis, moto and its server's dependencies.
COPY requirements.lock setup.py ./
COPY movierec/ movierec/
COPY components/ components/
COPY pipeline/ pipeline/
COPY serving/ serving/
RUN python -m pip install --no-cache-dir uv==0.13.9 \
 && python -m uv pip install --system --no-cache --compile-bytecode -c requirements.lock . \
 && movierec --help > /dev/null \
 && python -c "import tensorflow as tf, tensorflow_io, apache_beam.io.aws.s3filesystem; \
assert 's3' in tf.io.gfile.get_registered_schemes(); import movierec.pipeline.kubeflow_v2_runner"

ENTRYPOINT ["movierec"]
