// CRC-32C (Castagnoli, polynomial 0x1EDC6F41, reflected; as in iSCSI,
// SCTP and ext4): rudp's datagram checksum. SSE4.2 computes it in hardware
// (8 bytes per instruction), chosen at run time; a table does it
// elsewhere. zlib's CRC-32 cost 7% of an rudp echo server's CPU at 64-byte
// messages; this costs well under 1%. CRC-32C also detects more errors at
// these lengths (Castagnoli's polynomial has a larger Hamming distance).
//
// Thread rules: pure functions; any thread.
#pragma once

#include <cstddef>
#include <cstdint>

namespace sluice::rudp {

// Continues a CRC: crc32c(crc32c(0, a), b) == crc32c(0, a + b).
// crc32c(0, "123456789", 9) == 0xE3069283.
uint32_t crc32c(uint32_t crc, const void* data, size_t n);
// The table version, whatever the CPU (tests compare the two).
uint32_t crc32c_portable(uint32_t crc, const void* data, size_t n);

}  // namespace sluice::rudp
