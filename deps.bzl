"""The repositories sluice needs declared in any workspace that builds it.

Debian's bazel-bootstrap builds offline, so rules_cc, rules_java and
remote_coverage_tools (which Bazel 4 asks for on every C++ build and test)
cannot be downloaded; they map to tiny stubs in sluice's third_party/ that
re-export Bazel's native rules. sluice's own WORKSPACE and a consumer's
both call sluice_dependencies(), so the stubs are declared in one place:

    local_repository(name = "sluice", path = "...")
    load("@sluice//:deps.bzl", "sluice_dependencies")
    sluice_dependencies()
"""

# A repository rule rather than native.local_repository: local_repository
# needs sluice's path on disk, which a WORKSPACE macro cannot know (the
# consumer chose it), while a repository rule can ask for the path of a
# label in sluice. Label() here resolves in the repository holding this
# file, so the same code works with sluice as the main repository and as
# @sluice.
_ROOT = Label("//:deps.bzl")

def _stub_impl(rctx):
    src = rctx.path(_ROOT).dirname.get_child("third_party").get_child(rctx.attr.stub)
    if not src.exists:
        fail("sluice: no stub at %s" % src)
    for child in src.readdir():
        rctx.symlink(child, child.basename)

_stub = repository_rule(
    implementation = _stub_impl,
    attrs = {"stub": attr.string(mandatory = True)},
    local = True,
)

def sluice_dependencies():
    """Declares the offline stubs sluice builds with, unless already declared.

    A workspace that declares its own rules_cc (or the others) keeps it.
    """
    for name in ["rules_cc", "rules_java", "remote_coverage_tools"]:
        if not native.existing_rule(name):
            _stub(name = name, stub = name)
