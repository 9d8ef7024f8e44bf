// Forklift v2.10.6 (commit d0b711228989): forklift-controller and forklift-api, built by
// tests/realstack/forklift.py. The one replace repeats Forklift's own go.mod. go.sum is written
// by `go mod tidy` in the build's scratch copy; the Go module proxy refused this module when it
// was added (docs/testing.md).
module mtv-register.test/forklift

go 1.25.0

require github.com/kubev2v/forklift v0.0.0-20260311133542-d0b711228989

tool (
	github.com/kubev2v/forklift/cmd/forklift-api
	github.com/kubev2v/forklift/cmd/forklift-controller
)

replace github.com/gophercloud/gophercloud => github.com/kubev2v/gophercloud v0.0.0-20230629135522-9d701a75c760
