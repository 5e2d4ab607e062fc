#pragma once
// Internal to the library: the non-temporal store policy that the stencil kernels share
// (StarStencil::setStreamingStores sets it for all of them).

#include <cstddef>

namespace physgrad::detail {

/// Whether a kernel that writes `output_bytes` of results should write them with
/// non-temporal stores: never without AVX-512 or under StreamingStores::Never, always under
/// StreamingStores::Always, else (Auto) when twice the output (input and output) of all
/// ranks on the node exceeds the last-level cache (sysfs, at most 32 MiB).
bool streamingWorthIt(std::size_t output_bytes);

}  // namespace physgrad::detail
