// libFuzzer target: the guest's side of the exec channel (untrusted frames
// on the exec-out port) as ExecChannel::on_guest_bytes() parses them.
//
// Input layout:
//   [0]    sessions to start first (mod 36: a few past VIC_EXEC_MAX_SESSIONS)
//   [1]    flags: bit 0 sessions alternate tty / open_stdin requests,
//          bit 1 close() the channel at the end,
//          bit 2 the host writes stdin / signals / resizes between chunks
//   [2]    split count n (mod 16)
//   [3..3+2n) split positions (u16 little-endian, mod the stream size)
//   rest   the guest's byte stream
//
// The stream is fed twice: whole, and cut at the split positions. Checked:
// events are the same both ways (framing does not depend on how the port's
// reads cut the stream), no event for an unknown session or after its exit,
// one exit per session, streams 1/2 only, payloads within the protocol's
// limit, sessions() agrees, every frame sent to the guest is well formed.
// Run: tools/fuzz exec_channel [SECONDS]
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "tests/fuzz/fuzz_check.h"
#include "vmm/agent/exec_channel.h"

using namespace vicvmm;

namespace {

struct Run {
  std::vector<std::string> log;       // every event, in order
  std::set<uint32_t> started;         // sessions start() accepted
  std::set<uint32_t> ended;           // sessions that got exited()
  std::vector<uint8_t> sent;          // host -> guest bytes
};

ExecEvents events_for(Run& run, uint32_t* id_slot) {
  ExecEvents ev;
  ev.output = [&run, id_slot](uint32_t stream, std::span<const uint8_t> bytes) {
    uint32_t id = *id_slot;
    FUZZ_CHECK(run.started.count(id) && !run.ended.count(id));
    FUZZ_CHECK(stream == 1 || stream == 2);
    FUZZ_CHECK(bytes.size() <= VIC_EXEC_MAX_PAYLOAD);
    run.log.push_back("out " + std::to_string(id) + " " + std::to_string(stream) + " " +
                      std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
  };
  ev.started = [&run, id_slot](uint32_t pid) {
    uint32_t id = *id_slot;
    FUZZ_CHECK(run.started.count(id) && !run.ended.count(id));
    run.log.push_back("started " + std::to_string(id) + " " + std::to_string(pid));
  };
  ev.exited = [&run, id_slot](int status, const std::string& error) {
    uint32_t id = *id_slot;
    FUZZ_CHECK(run.started.count(id));
    FUZZ_CHECK(run.ended.insert(id).second);  // once
    FUZZ_CHECK(status >= 0 && status <= 128 + 255);
    run.log.push_back("exited " + std::to_string(id) + " " + std::to_string(status) + " " + error);
  };
  return ev;
}

// Every frame the host sent: a header, a payload within the limit, a host type.
void check_sent(const std::vector<uint8_t>& sent) {
  size_t pos = 0;
  while (pos < sent.size()) {
    FUZZ_CHECK(sent.size() - pos >= sizeof(vic_exec_frame));
    vic_exec_frame h;
    std::memcpy(&h, sent.data() + pos, sizeof h);
    FUZZ_CHECK(h.type >= VIC_EXEC_START && h.type <= VIC_EXEC_RESIZE);
    FUZZ_CHECK(h.len <= VIC_EXEC_MAX_PAYLOAD);
    FUZZ_CHECK(sent.size() - pos - sizeof h >= h.len);
    pos += sizeof h + h.len;
  }
}

// Starts the sessions, feeds `chunks`, returns what happened.
void run_channel(Run& run, unsigned nsessions, uint8_t flags, std::span<const uint8_t> stream,
                 const std::vector<size_t>& cuts) {
  ExecChannel ch([&run](std::span<const uint8_t> b) -> Result<> {
    run.sent.insert(run.sent.end(), b.begin(), b.end());
    return {};
  });
  // Ids are stable addresses for the callbacks (filled in after start()).
  std::vector<std::unique_ptr<uint32_t>> ids;
  for (unsigned i = 0; i < nsessions; ++i) {
    ExecRequest req;
    req.argv = {"sh", "-c", "echo " + std::to_string(i)};
    if (i % 3 == 1) req.env = {"A=" + std::to_string(i)};
    if (flags & 1) {
      req.tty = i % 2;
      req.open_stdin = !(i % 2);
    }
    ids.push_back(std::make_unique<uint32_t>(0));
    // Ids are handed out from 1 in order; the callback reads the slot only
    // after start() returned, as no event arrives before bytes are fed.
    auto id = ch.start(req, events_for(run, ids.back().get()));
    if (i < VIC_EXEC_MAX_SESSIONS) FUZZ_CHECK(id.has_value());
    else FUZZ_CHECK(!id.has_value());
    if (id) {
      *ids.back() = *id;
      FUZZ_CHECK(run.started.insert(*id).second);
    }
  }
  FUZZ_CHECK(ch.sessions() == run.started.size());

  size_t prev = 0;
  for (size_t k = 0; k <= cuts.size(); ++k) {
    size_t end = k < cuts.size() ? cuts[k] : stream.size();
    ch.on_guest_bytes(stream.subspan(prev, end - prev));
    prev = end;
    FUZZ_CHECK(ch.sessions() == run.started.size() - run.ended.size());
    if ((flags & 4) && !run.started.empty()) {
      uint32_t id = *run.started.begin();
      uint8_t b[3] = {'x', 'y', static_cast<uint8_t>(k)};
      (void)ch.write_stdin(id, b);
      (void)ch.signal(id, 15);
      (void)ch.resize(id, 24, 80);
    }
  }
  if (flags & 2) {
    ch.close("fuzz: closed");
    FUZZ_CHECK(ch.sessions() == 0);
    FUZZ_CHECK(run.ended == run.started);
    FUZZ_CHECK(!ch.start({{"sh"}}, {}).has_value());
  }
  check_sent(run.sent);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  const unsigned nsessions = data[0] % 36;
  const uint8_t flags = data[1];
  const unsigned nsplits = data[2] % 16;
  size_t pos = 3;
  if (size - pos < 2 * nsplits) return 0;
  std::vector<uint16_t> raw(nsplits);
  for (unsigned i = 0; i < nsplits; ++i) raw[i] = static_cast<uint16_t>(data[pos + 2 * i] | (data[pos + 2 * i + 1] << 8));
  pos += 2 * nsplits;
  std::span<const uint8_t> stream(data + pos, size - pos);
  std::vector<size_t> cuts;
  for (uint16_t r : raw) cuts.push_back(r % (stream.size() + 1));
  std::sort(cuts.begin(), cuts.end());

  Run whole, chunked;
  run_channel(whole, nsessions, flags & ~4, stream, {});
  run_channel(chunked, nsessions, flags, stream, cuts);
  FUZZ_CHECK(whole.log == chunked.log);
  return 0;
}
