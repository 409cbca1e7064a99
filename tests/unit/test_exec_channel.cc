// The host side of the exec channel: frames out as the guest agent parses
// them, and the guest's frames (untrusted) in, split anywhere.
#include <catch2/catch.hpp>

#include <cstring>

#include "vmm/agent/exec_channel.h"

using namespace vicvmm;

namespace {

struct Sent {
  std::vector<std::vector<uint8_t>> frames;
};

std::vector<uint8_t> guest_frame(uint32_t type, uint32_t id, const std::string& payload) {
  vic_exec_frame h{type, id, static_cast<uint32_t>(payload.size())};
  std::vector<uint8_t> out(sizeof h + payload.size());
  std::memcpy(out.data(), &h, sizeof h);
  std::memcpy(out.data() + sizeof h, payload.data(), payload.size());
  return out;
}

std::string u32(uint32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); }

struct Recorder {
  std::string out, err;
  int status = -1;
  std::string error;
  uint32_t pid = 0;
  ExecEvents events() {
    ExecEvents ev;
    ev.output = [this](uint32_t s, std::span<const uint8_t> b) {
      (s == 1 ? out : err).append(reinterpret_cast<const char*>(b.data()), b.size());
    };
    ev.started = [this](uint32_t p) { pid = p; };
    ev.exited = [this](int st, const std::string& e) {
      status = st;
      error = e;
    };
    return ev;
  }
};

}  // namespace

TEST_CASE("exec channel: START frame layout", "[exec]") {
  Sent sent;
  ExecChannel ch([&](std::span<const uint8_t> b) -> Result<> {
    sent.frames.emplace_back(b.begin(), b.end());
    return {};
  });
  Recorder r;
  ExecRequest req{{"sh", "-c", "echo hi"}, {"A=1"}, "/w", "nobody", true, true};
  auto id = ch.start(req, r.events());
  REQUIRE(id);
  REQUIRE(sent.frames.size() == 1);
  const auto& f = sent.frames[0];
  vic_exec_frame h;
  std::memcpy(&h, f.data(), sizeof h);
  CHECK(h.type == VIC_EXEC_START);
  CHECK(h.id == *id);
  REQUIRE(h.len == f.size() - sizeof h);
  uint32_t words[3];
  std::memcpy(words, f.data() + sizeof h, 12);
  CHECK(words[0] == (VIC_EXEC_TTY | VIC_EXEC_OPEN_STDIN));
  CHECK(words[1] == 3);
  CHECK(words[2] == 1);
  std::string strings(reinterpret_cast<const char*>(f.data()) + sizeof h + 12, h.len - 12);
  CHECK(strings == std::string("sh\0-c\0echo hi\0A=1\0/w\0nobody\0", 28));

  // Stdin in frames of at most VIC_EXEC_MAX_PAYLOAD bytes, then EOF.
  std::vector<uint8_t> big(VIC_EXEC_MAX_PAYLOAD + 10, 'x');
  REQUIRE(ch.write_stdin(*id, big));
  REQUIRE(ch.close_stdin(*id));
  REQUIRE(sent.frames.size() == 4);
  std::memcpy(&h, sent.frames[1].data(), sizeof h);
  CHECK((h.type == VIC_EXEC_STDIN && h.len == VIC_EXEC_MAX_PAYLOAD));
  std::memcpy(&h, sent.frames[2].data(), sizeof h);
  CHECK((h.type == VIC_EXEC_STDIN && h.len == 10));
  std::memcpy(&h, sent.frames[3].data(), sizeof h);
  CHECK((h.type == VIC_EXEC_STDIN_EOF && h.len == 0));
}

TEST_CASE("exec channel: bad requests are refused before anything is sent", "[exec]") {
  int sends = 0;
  ExecChannel ch([&](std::span<const uint8_t>) -> Result<> {
    ++sends;
    return {};
  });
  Recorder r;
  CHECK_FALSE(ch.start({}, r.events()));
  CHECK_FALSE(ch.start(ExecRequest{{std::string("a\0b", 3)}}, r.events()));
  CHECK_FALSE(ch.start(ExecRequest{{"x", std::string(VIC_EXEC_MAX_PAYLOAD, 'y')}}, r.events()));
  CHECK_FALSE(ch.signal(1, 0));
  CHECK(sends == 0);
  for (uint32_t i = 0; i < VIC_EXEC_MAX_SESSIONS; ++i) REQUIRE(ch.start(ExecRequest{{"true"}}, r.events()));
  auto one_more = ch.start(ExecRequest{{"true"}}, r.events());
  REQUIRE_FALSE(one_more);
  CHECK(one_more.error().message.find("sessions") != std::string::npos);
}

TEST_CASE("exec channel: guest frames, split anywhere, reach their session", "[exec]") {
  ExecChannel ch([](std::span<const uint8_t>) -> Result<> { return {}; });
  Recorder r, other;
  auto id = ch.start(ExecRequest{{"cat"}}, r.events());
  auto id2 = ch.start(ExecRequest{{"cat"}}, other.events());
  REQUIRE((id && id2));
  std::vector<uint8_t> stream;
  for (auto f : {guest_frame(VIC_EXEC_STARTED, *id, u32(42)), guest_frame(VIC_EXEC_STDOUT, *id, "hel"),
                 guest_frame(VIC_EXEC_STDOUT, *id2, "not yours"), guest_frame(VIC_EXEC_STDERR, *id, "oops"),
                 guest_frame(VIC_EXEC_STDOUT, 999, "unknown session"), guest_frame(77, *id, "unknown type"),
                 guest_frame(VIC_EXEC_STDOUT, *id, "lo"), guest_frame(VIC_EXEC_EXIT, *id, u32(VIC_EXIT_SIGNALED | 9)),
                 guest_frame(VIC_EXEC_STDOUT, *id, "after the exit")})
    stream.insert(stream.end(), f.begin(), f.end());
  // One byte at a time: the port delivers bytes, not frames.
  for (uint8_t b : stream) ch.on_guest_bytes({&b, 1});
  CHECK(r.pid == 42);
  CHECK(r.out == "hello");
  CHECK(r.err == "oops");
  CHECK(r.status == 137);  // 128 + SIGKILL, as a shell reports it
  CHECK(other.out == "not yours");
  CHECK(other.status == -1);
  CHECK(ch.sessions() == 1);
}

TEST_CASE("exec channel: an oversized guest frame closes the channel, ending every session", "[exec]") {
  ExecChannel ch([](std::span<const uint8_t>) -> Result<> { return {}; });
  Recorder r;
  auto id = ch.start(ExecRequest{{"cat"}}, r.events());
  REQUIRE(id);
  vic_exec_frame h{VIC_EXEC_STDOUT, *id, VIC_EXEC_MAX_PAYLOAD + 1};
  ch.on_guest_bytes({reinterpret_cast<const uint8_t*>(&h), sizeof h});
  CHECK(r.status == 255);
  CHECK(r.error.find("channel closed") != std::string::npos);
  CHECK(ch.sessions() == 0);
  CHECK_FALSE(ch.start(ExecRequest{{"cat"}}, r.events()));
  // The VM stopping ends sessions the same way; a restart reopens.
  ch.reopen();
  Recorder r2;
  REQUIRE(ch.start(ExecRequest{{"cat"}}, r2.events()));
  ch.close("the container's VM stopped");
  CHECK(r2.status == 255);
  CHECK(r2.error == "the container's VM stopped");
}

TEST_CASE("exec channel: a transport failure mid-frame closes the channel", "[exec]") {
  ExecChannel ch([](std::span<const uint8_t>) -> Result<> { return err("the guest stopped reading"); });
  Recorder r;
  auto id = ch.start(ExecRequest{{"cat"}}, r.events());
  CHECK_FALSE(id);
  CHECK(r.status == 255);
  CHECK_FALSE(ch.start(ExecRequest{{"cat"}}, r.events()));
}
