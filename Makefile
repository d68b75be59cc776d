# SAM "makefile" builds (Metadata BuildMethod: makefile in template.yaml and
# infra/queue.yaml). Every function's CodeUri is the repo root, because api/,
# functions/ and shared/ are sibling packages; the default python builder would
# zip the whole root (.venv, tests, .git ...). These targets put into each
# artifact only the packages that function imports, and the third-party
# dependencies go once into the layer. The consumer never ships FastAPI; only the
# consumers ship the processors package (the API knows the job types by name, shared/catalog.py).
#
# sam build runs `make build-<LogicalId>` with ARTIFACTS_DIR set, in the repo
# root (samconfig.toml: build_in_source) or in a scratch copy of it.

PYTHON ?= python3
# Copy packages without bytecode caches or tests (GNU tar excludes match at any depth).
COPY_PACKAGES = tar -c --exclude=__pycache__ --exclude='*.py[co]' --exclude=tests --exclude='test_*.py' \
	--exclude='*_test.py' --exclude=conftest.py

# Without ARTIFACTS_DIR, pip -t would write to /python: refuse.
artifacts-dir:
	@test -n "$(ARTIFACTS_DIR)" || { echo "ARTIFACTS_DIR is not set: run these targets through sam build" >&2; exit 1; }

# api/ brings the dashboard's static files (api/dashboard/*.html|js|css|svg), served at /dashboard;
# checked: the build fails if they are missing. No build step: they ship as written.
build-ApiFunction: artifacts-dir
	$(COPY_PACKAGES) api shared | tar -x -C "$(ARTIFACTS_DIR)"
	test -f "$(ARTIFACTS_DIR)/api/dashboard/index.html" && test -f "$(ARTIFACTS_DIR)/api/dashboard/app.js"

build-ConsumerFunction: artifacts-dir
	$(COPY_PACKAGES) shared processors functions/__init__.py functions/consumer | tar -x -C "$(ARTIFACTS_DIR)"

build-EventsFunction: artifacts-dir
	$(COPY_PACKAGES) shared functions/__init__.py functions/events | tar -x -C "$(ARTIFACTS_DIR)"

# Step Functions targets: the end of an execution ends its job (the domain alone, no processors).
build-ExecutionEventsFunction: artifacts-dir
	$(COPY_PACKAGES) shared functions/__init__.py functions/executions | tar -x -C "$(ARTIFACTS_DIR)"

# Live events: the WebSocket routes and the stream consumer that pushes (and the webhook deliveries).
build-RealtimeConnectionsFunction build-RealtimeEventsFunction build-WebhookDeliveryFunction: artifacts-dir
	$(COPY_PACKAGES) shared functions/__init__.py functions/realtime | tar -x -C "$(ARTIFACTS_DIR)"

# Scheduling and maintenance: the domain alone (a firing creates a job; the catalog names its types).
build-SchedulerFunction build-CleanupFunction build-HealthFunction: artifacts-dir
	$(COPY_PACKAGES) shared functions/__init__.py functions/scheduler functions/cleanup functions/health \
		| tar -x -C "$(ARTIFACTS_DIR)"

# Wheels for the Lambda runtime (python3.12, x86_64), whatever python runs pip
# (--no-compile: .pyc from that python would not match 3.12).
# botocore (pulled in by aws-xray-sdk, ~30 MB) and boto3/s3transfer come with the runtime: drop them.
build-DependenciesLayer: artifacts-dir
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --no-warn-conflicts \
		--root-user-action=ignore --no-compile \
		-r requirements.txt -t "$(ARTIFACTS_DIR)/python" \
		--platform manylinux2014_x86_64 --implementation cp --python-version 3.12 \
		--only-binary=:all: --upgrade
	cd "$(ARTIFACTS_DIR)/python" && rm -rf boto3 boto3-* botocore botocore-* s3transfer s3transfer-* bin

.PHONY: artifacts-dir build-ApiFunction build-ConsumerFunction build-EventsFunction build-ExecutionEventsFunction build-DependenciesLayer
