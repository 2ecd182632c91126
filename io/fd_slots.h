// FdSlots: maps descriptors to slots of a dense array, for pollers that
// scan their watched set (poll, nonblocking). Removal moves the last slot
// into the hole, so the array has no gaps and a scan touches only watched
// descriptors. The caller keeps its per-slot data in its own arrays and
// mirrors each move.
//
// Thread rules: not synchronised; the owning poller's loop thread only.
#pragma once

#include <cstddef>
#include <vector>

namespace sluice::io {

class FdSlots {
 public:
  // The slot of fd, or -1 when it is not watched.
  int find(int fd) const {
    return static_cast<size_t>(fd) < slot_of_.size() ? slot_of_[fd] : -1;
  }

  // Adds fd (not yet present) at slot size() and returns that slot.
  int add(int fd) {
    if (static_cast<size_t>(fd) >= slot_of_.size()) {
      slot_of_.resize(static_cast<size_t>(fd) * 2 + 64, -1);
    }
    slot_of_[fd] = static_cast<int>(fd_of_.size());
    fd_of_.push_back(fd);
    return slot_of_[fd];
  }

  // Removes fd if present. move(from, to) is called when the last slot
  // `from` is moved into the freed slot `to`; then the caller pops its
  // arrays' last element.
  template <typename Move>
  bool remove(int fd, Move&& move) {
    const int slot = find(fd);
    if (slot < 0) return false;
    const size_t last = fd_of_.size() - 1;
    if (static_cast<size_t>(slot) != last) {
      move(last, static_cast<size_t>(slot));
      fd_of_[slot] = fd_of_[last];
      slot_of_[fd_of_[slot]] = slot;
    }
    fd_of_.pop_back();
    slot_of_[fd] = -1;
    return true;
  }

  size_t size() const { return fd_of_.size(); }

 private:
  std::vector<int> slot_of_;  // fd -> slot, -1 if not watched
  std::vector<int> fd_of_;    // slot -> fd
};

}  // namespace sluice::io
