#include "base/buffer.h"

#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include <gtest/gtest.h>

namespace sluice {
namespace {

TEST(Buffer, AppendRetrieveKeepsOrder) {
  Buffer b(8);
  b.append("hello");
  b.append(std::string_view(", world"));
  EXPECT_EQ(b.view(), "hello, world");
  b.retrieve(7);
  EXPECT_EQ(b.view(), "world");
  EXPECT_EQ(b.retrieve_as_string(5), "world");
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(b.prependable(), Buffer::kCheapPrepend);  // reset when emptied
}

TEST(Buffer, PrependHeaderWithoutMovingPayload) {
  Buffer b;
  b.append("payload");
  const char* payload = b.peek();
  uint32_t len = 7;
  b.prepend(&len, sizeof len);
  EXPECT_EQ(b.readable(), 11u);
  EXPECT_EQ(b.peek() + 4, payload);
  uint32_t back;
  std::memcpy(&back, b.peek(), 4);
  EXPECT_EQ(back, 7u);
}

TEST(Buffer, CompactsInsteadOfGrowingWhenThereIsRoom) {
  Buffer b(64);
  const size_t cap = b.capacity();
  b.append(std::string(60, 'a'));
  b.retrieve(50);
  b.append(std::string(40, 'b'));  // fits after sliding 10 bytes to the front
  EXPECT_EQ(b.capacity(), cap);
  EXPECT_EQ(b.view(), std::string(10, 'a') + std::string(40, 'b'));
}

TEST(Buffer, GrowsGeometrically) {
  Buffer b(16);
  std::string all;
  for (int i = 0; i < 1000; ++i) {
    std::string piece(i % 97 + 1, static_cast<char>('a' + i % 26));
    b.append(piece);
    all += piece;
  }
  EXPECT_EQ(b.view(), all);
  EXPECT_LT(b.capacity(), all.size() * 4);
}

TEST(Buffer, ReadFdUsesSpillAreaForLargeReads) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  int big = 1 << 20;
  ::setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
  std::string data(100000, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7);
  size_t sent = 0;
  Buffer b(128);  // far smaller than one read
  std::string got;
  while (got.size() < data.size()) {
    if (sent < data.size()) {
      ssize_t w = ::send(sv[0], data.data() + sent, data.size() - sent, MSG_DONTWAIT);
      if (w > 0) sent += static_cast<size_t>(w);
    }
    ssize_t n = b.read_fd(sv[1]);
    ASSERT_GT(n, 0);
    got.append(b.peek(), b.readable());
    b.retrieve_all();
  }
  EXPECT_EQ(got, data);
  ::close(sv[0]);
  EXPECT_EQ(b.read_fd(sv[1]), 0);  // EOF
  ::close(sv[1]);
  EXPECT_EQ(b.read_fd(sv[1]), -EBADF);  // -errno, copied at once
}

TEST(Buffer, SwapAndMove) {
  Buffer a, b;
  a.append("aaa");
  b.append("bb");
  a.swap(b);
  EXPECT_EQ(a.view(), "bb");
  EXPECT_EQ(b.view(), "aaa");
  Buffer c(std::move(b));
  EXPECT_EQ(c.view(), "aaa");
  EXPECT_TRUE(b.empty());
  b.append("reusable after move");
  EXPECT_EQ(b.view(), "reusable after move");
}

TEST(Buffer, ShrinkReleasesMemoryButKeepsData) {
  Buffer b;
  b.append(std::string(1 << 20, 'z'));
  b.retrieve((1 << 20) - 10);
  b.shrink();
  EXPECT_LT(b.capacity(), size_t{64} << 10);
  EXPECT_EQ(b.view(), std::string(10, 'z'));
}

}  // namespace
}  // namespace sluice
