// Numbers from the virtio 1.2 specification that the transport, the split
// virtqueue and the devices share. Only the modern (version 2) MMIO
// interface is implemented; legacy layouts are not.
#pragma once

#include <cstdint>

namespace vicvmm::virtio {

// Device status bits (2.1).
inline constexpr uint32_t kStatusAcknowledge = 1;
inline constexpr uint32_t kStatusDriver = 2;
inline constexpr uint32_t kStatusDriverOk = 4;
inline constexpr uint32_t kStatusFeaturesOk = 8;
inline constexpr uint32_t kStatusNeedsReset = 64;
inline constexpr uint32_t kStatusFailed = 128;

// Reserved feature bits (6).
inline constexpr uint64_t kFeatureIndirectDesc = 1ull << 28;
inline constexpr uint64_t kFeatureEventIdx = 1ull << 29;
inline constexpr uint64_t kFeatureVersion1 = 1ull << 32;
// The features every vicvmm device offers on top of its own.
inline constexpr uint64_t kTransportFeatures = kFeatureIndirectDesc | kFeatureEventIdx | kFeatureVersion1;

// Device IDs (5).
inline constexpr uint32_t kDeviceNet = 1;
inline constexpr uint32_t kDeviceBlock = 2;
inline constexpr uint32_t kDeviceConsole = 3;
inline constexpr uint32_t kDeviceRng = 4;

// Split virtqueue descriptor flags (2.7.5).
inline constexpr uint16_t kDescNext = 1;
inline constexpr uint16_t kDescWrite = 2;
inline constexpr uint16_t kDescIndirect = 4;
// Driver -> device: "no interrupt needed" (without EVENT_IDX).
inline constexpr uint16_t kAvailNoInterrupt = 1;

// The largest queue a device may offer (2.7: Queue Size <= 32768).
inline constexpr uint16_t kMaxQueueSize = 32768;

struct Descriptor {  // 16 bytes, little-endian in guest memory
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};
static_assert(sizeof(Descriptor) == 16);

struct UsedElem {
  uint32_t id;
  uint32_t len;
};
static_assert(sizeof(UsedElem) == 8);

// Interrupt status bits (4.2.2).
inline constexpr uint32_t kInterruptVring = 1;
inline constexpr uint32_t kInterruptConfig = 2;

// virtio-mmio register offsets (4.2.2, version 2).
namespace mmio {
inline constexpr uint32_t kMagic = 0x74726976;  // "virt"
inline constexpr uint32_t kVersion = 2;
inline constexpr uint32_t kVendor = 0x4d564356;  // "VCVM"
inline constexpr uint64_t kRegMagic = 0x000;
inline constexpr uint64_t kRegVersion = 0x004;
inline constexpr uint64_t kRegDeviceId = 0x008;
inline constexpr uint64_t kRegVendorId = 0x00c;
inline constexpr uint64_t kRegDeviceFeatures = 0x010;
inline constexpr uint64_t kRegDeviceFeaturesSel = 0x014;
inline constexpr uint64_t kRegDriverFeatures = 0x020;
inline constexpr uint64_t kRegDriverFeaturesSel = 0x024;
inline constexpr uint64_t kRegQueueSel = 0x030;
inline constexpr uint64_t kRegQueueNumMax = 0x034;
inline constexpr uint64_t kRegQueueNum = 0x038;
inline constexpr uint64_t kRegQueueReady = 0x044;
inline constexpr uint64_t kRegQueueNotify = 0x050;
inline constexpr uint64_t kRegInterruptStatus = 0x060;
inline constexpr uint64_t kRegInterruptAck = 0x064;
inline constexpr uint64_t kRegStatus = 0x070;
inline constexpr uint64_t kRegQueueDescLow = 0x080;
inline constexpr uint64_t kRegQueueDescHigh = 0x084;
inline constexpr uint64_t kRegQueueDriverLow = 0x090;
inline constexpr uint64_t kRegQueueDriverHigh = 0x094;
inline constexpr uint64_t kRegQueueDeviceLow = 0x0a0;
inline constexpr uint64_t kRegQueueDeviceHigh = 0x0a4;
inline constexpr uint64_t kRegShmSel = 0x0ac;
inline constexpr uint64_t kRegShmLenLow = 0x0b0;
inline constexpr uint64_t kRegShmLenHigh = 0x0b4;
inline constexpr uint64_t kRegShmBaseLow = 0x0b8;
inline constexpr uint64_t kRegShmBaseHigh = 0x0bc;
inline constexpr uint64_t kRegConfigGeneration = 0x0fc;
inline constexpr uint64_t kRegConfig = 0x100;
inline constexpr uint64_t kWindowSize = 0x1000;  // one page per device
}  // namespace mmio

}  // namespace vicvmm::virtio
