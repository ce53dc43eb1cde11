# movierec: the two everyday commands are `make run` and `make test`.
PY := .venv/bin/python
# Default dataset: $MOVIEREC_DATA_DIR, else ../shared/data/ml-100k when present; with
# neither, `movierec run` uses a cached or downloaded ml-100k, else synthetic data.
DATA_DIR ?= $(or $(MOVIEREC_DATA_DIR),$(wildcard ../shared/data/ml-100k))
OUTPUT_DIR ?= outputs
export PYTHONWARNINGS ?= ignore::FutureWarning

.PHONY: venv run test lock clean retrain-demo

venv:
	@scripts/bootstrap.sh

run: venv
	$(PY) -m movierec.cli run $(if $(DATA_DIR),--data-dir $(DATA_DIR)) --output-dir $(OUTPUT_DIR) $(RUN_ARGS)

test: venv
	$(PY) -m pytest tests $(PYTEST_ARGS)

# Re-resolve setup.py's dependencies (runtime + the test extra) into requirements.lock
# (Python 3.10, Linux x86_64); pins already in the lock are kept unless they must change.
lock: venv
	$(PY) -m uv pip compile setup.py --extra test --python-version 3.10 \
	  --python-platform x86_64-manylinux_2_28 -o requirements.lock

clean:
	rm -rf $(OUTPUT_DIR) .pytest_cache

# Cut the dataset into 3 spans by time and retrain once per arriving span (then once more
# with nothing new); prints per span the metrics, the blessing and the served version.
retrain-demo: venv
	@test -n "$(DATA_DIR)" || { echo "set DATA_DIR (or MOVIEREC_DATA_DIR) to a MovieLens folder"; exit 2; }
	rm -rf $(OUTPUT_DIR)/retrain-demo
	$(PY) -m movierec.retrain_demo --data-dir $(DATA_DIR) --out $(OUTPUT_DIR)/retrain-demo $(if $(RUN_ARGS),-- $(RUN_ARGS))
