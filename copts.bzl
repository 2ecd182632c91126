"""Compiler flags for sluice's own targets.

They sit on each cc_library/cc_binary/cc_test as `copts` (not in .bazelrc)
because an outside workspace that depends on sluice never reads sluice's
.bazelrc: the language level must travel with the targets. copts do not
propagate to dependents, so a consumer's own targets that include sluice
headers (C++20) use SLUICE_STD_COPTS themselves (README: "Using sluice from
your own Bazel workspace").
"""

# The language level sluice's headers and sources are written in.
SLUICE_STD_COPTS = ["-std=c++20"]

# What every sluice target compiles with: the language level plus warnings
# as errors. Optimisation and debug info stay in .bazelrc (a build choice,
# not a property of the code).
SLUICE_COPTS = SLUICE_STD_COPTS + [
    "-Wall",
    "-Wextra",
    "-Werror",
]
