# The two set-up commands of README.md. Both install what they need (hack/bootstrap.sh).
.PHONY: test lab lab-down bootstrap
test:
	./hack/test.sh
lab:
	./hack/lab.sh up
lab-down:
	./hack/lab.sh down
bootstrap:
	./hack/bootstrap.sh
