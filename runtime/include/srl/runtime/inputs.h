// Engine inputs over the userspace ends of channels: AF_XDP sockets from the
// kernel space (one per receive queue), copy rings and AF_PACKET sockets for `rx` nodes
// placed in userspace.
#pragma once

#include <memory>
#include <string>

#include "srl/runtime/afxdp.h"
#include "srl/runtime/copy_ring.h"
#include "srl/runtime/engine.h"
#include "srl/runtime/packet_socket.h"

namespace srl::runtime {

// Blocks enter at the entries of the tag's exit bits: build the engine's
// entries from the program's exits, in bit order (exit bit i = entry i).
std::unique_ptr<BlockInput> afxdp_input(std::unique_ptr<AfxdpChannel> channel);

// Blocks copied (or taken) through a copy ring: each record carries its
// exit mask, as the AF_XDP tag does.
std::unique_ptr<BlockInput> copy_ring_input(std::unique_ptr<CopyRing> ring);

// An `rx` node in userspace: every frame enters at `entry`.
std::unique_ptr<BlockInput> packet_socket_input(std::unique_ptr<PacketSocketSource> socket,
                                                std::uint32_t entry);

// The number of receive queues of `dev` (from sysfs; 1 when unknown).
std::uint32_t rx_queue_count(const std::string& dev);

}  // namespace srl::runtime
