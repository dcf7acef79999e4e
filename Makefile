# The two commands of the README: `make demo` and `make test`. Both install what is missing first.
LAB   ?= demo
NODES ?= 3
# local: emulated nodes; qemu: real Debian VMs (make demo PROVIDER=qemu LAB=vms)
PROVIDER ?= local
VENV  := .venv/bin

.PHONY: setup demo test unit lint down help

help:
	@echo "make demo   set up, bring up a $(NODES)-node emulated lab '$(LAB)' and show it"
	@echo "            (make demo PROVIDER=qemu LAB=vms: the same on real Debian VMs under qemu)"
	@echo "make test   set up, then lint (ruff, mypy) and run the whole test suite"
	@echo "make down   remove the demo lab"

setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/lab up --name $(LAB) --nodes $(NODES) --provider $(PROVIDER)
	$(VENV)/lab status
	$(VENV)/lab deploy
	$(VENV)/lab apply -f examples/
	$(VENV)/lab get nodes -o wide
	$(VENV)/lab get pods -o wide
	$(VENV)/lab get svc -A
	$(VENV)/lab describe svc nginx
	@bash scripts/demo-no-nat.sh $(VENV)/lab
	$(VENV)/lab verify
	$(VENV)/lab graph -o topology.svg
	@echo
	@echo "The lab '$(LAB)' is up with its pod network. Try:"
	@echo "  $(VENV)/lab exec node1 -- ip route               # routes to the other nodes' pod subnets"
	@echo "  $(VENV)/lab exec node1 -- iptables -t nat -S KUBE-SERVICES   # the service rules, as in the talk"
	@echo "  $(VENV)/lab exec node1 --pod POD -- ip addr      # inside a pod (names: lab get pods)"
	@echo "  $(VENV)/lab exec outside -- curl -s http://$$($(VENV)/lab get svc nginx-lb -o jsonpath='{.status.loadBalancer.ingress[0].ip}')/hostname"
	@echo "                                                   # nginx from outside, through its LoadBalancer address"
	@echo "  $(VENV)/lab get gateway,httproute; $(VENV)/lab describe httproute web   # HTTP through the Gateway API (docs/edge.md)"
	@echo "  $(VENV)/lab deploy --dry-run                     # what would change (nothing)"
	@echo "  $(VENV)/lab break --list; $(VENV)/lab break vxlan-fdb; $(VENV)/lab verify; $(VENV)/lab fix"
	@echo "  $(VENV)/lab play --list; $(VENV)/lab play 04-bridge   # the talk's lessons, run and checked"
	@echo "  open topology.svg                                 # the picture of the lab"
	@echo "  $(VENV)/lab ssh node2                            # a shell on a node"
	@echo "Remove it with: make down LAB=$(LAB)   (or: $(VENV)/lab down --name $(LAB))"

# Test modules run in parallel, each on one worker (its labs shared by its tests); every lab has a name of its own.
TEST_WORKERS ?= 3
test: setup lint
	$(VENV)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=15

lint: setup
	$(VENV)/ruff check .
	$(VENV)/mypy

unit: setup
	$(VENV)/python -m pytest tests/unit

down: setup
	$(VENV)/lab down --name $(LAB)
