# The pipeline image: Python 3.10, the locked dependencies and the movierec package.
# Referenced by the Kubeflow Pipelines V2 runner; also runs `movierec` locally:
#   docker build -t movierec:latest .
#   docker run --rm -v $PWD/data:/data -v $PWD/outputs:/outputs movierec:latest \
#       run --data-dir /data/ml-100k --output-dir /outputs
FROM python:3.10-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
WORKDIR /opt/movierec

COPY requirements.lock ./
RUN python -m pip install --no-cache-dir uv==0.13.9 \
 && python -m uv pip install --system --no-cache --compile-bytecode -r requirements.lock

COPY setup.py ./
COPY movierec/ movierec/
COPY components/ components/
COPY pipeline/ pipeline/
COPY serving/ serving/
RUN python -m uv pip install --system --no-cache --compile-bytecode --no-deps . \
 && movierec --help > /dev/null

ENTRYPOINT ["movierec"]
