// StateSlot: one typed value per connection (or UDP endpoint), created on
// first use, without std::any and an any_cast at every use.
//
//   struct Member { std::string nick; };
//   conn.state<Member>().nick = "alice";        // created (value-initialized) on first use
//   if (Member* m = conn.find_state<Member>())  // nullptr: none yet
//
// Memory: one pointer while empty (a connection that never asks for state
// allocates nothing); one heap object holding the value once created.
// Asking for another type than the one held is a programming error: get()
// aborts with a message (as a failed any_cast would have thrown), find()
// returns nullptr.
//
// Thread rules: those of the owner (a connection's loop thread).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <typeinfo>
#include <utility>

namespace sluice {

class StateSlot {
 public:
  // The value, value-initialized first if the slot is empty.
  template <class T>
  T& get() {
    if (!box_) return emplace<T>();
    if (box_->tag != type_tag<T>()) mismatch(typeid(T).name());
    return static_cast<Typed<T>*>(box_.get())->value;
  }
  // The value, or nullptr if the slot is empty or holds another type.
  template <class T>
  T* find() {
    if (!box_ || box_->tag != type_tag<T>()) return nullptr;
    return &static_cast<Typed<T>*>(box_.get())->value;
  }
  // Replaces whatever the slot held.
  template <class T, class... Args>
  T& emplace(Args&&... args) {
    auto box = std::make_unique<Typed<T>>(std::forward<Args>(args)...);
    T& value = box->value;
    box_ = std::move(box);
    return value;
  }
  void reset() { box_.reset(); }
  bool has_value() const { return box_ != nullptr; }

 private:
  struct Box {
    explicit Box(const void* t) : tag(t) {}
    virtual ~Box() = default;
    const void* tag;  // type_tag<T>() of the value's type: a compare, no RTTI walk
  };
  template <class T>
  struct Typed final : Box {
    template <class... Args>
    explicit Typed(Args&&... args) : Box(type_tag<T>()), value(std::forward<Args>(args)...) {}
    T value{};
  };
  // One address per type (an inline function's static is one object
  // program-wide).
  template <class T>
  static const void* type_tag() {
    static const char t = 0;
    return &t;
  }
  [[noreturn]] static void mismatch(const char* wanted) {
    std::fprintf(stderr, "sluice: StateSlot::get<%s>() on a slot holding another type\n",
                 wanted);
    std::abort();
  }

  std::unique_ptr<Box> box_;
};

}  // namespace sluice
