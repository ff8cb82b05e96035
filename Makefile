# Two commands for a fresh machine (Debian 12, root):
#   make lab   - set up, then bring up the podman lab (KMS + database host) and run playbooks/site.yml
#   make test  - set up, then run every test tier (sanity, lint, publish, unit, integration, molecule)
.PHONY: setup lab lab-down test sanity lint publish unit integration molecule bench build docsite

setup:
	bash scripts/setup.sh

lab: setup
	bash scripts/lab.sh up

lab-down:
	bash scripts/lab.sh down

test: setup
	bash scripts/test.sh

sanity lint publish unit integration molecule: setup
	TIERS=$@ bash scripts/test.sh

bench: setup
	bash bench/run.sh

build: setup
	.venv/bin/ansible-galaxy collection build --force --output-path .cache/build .

# docs/docsite/rst from the Markdown guides in docs/ (commit the result)
docsite: setup
	.cache/publish-venv/bin/python scripts/docsite.py
