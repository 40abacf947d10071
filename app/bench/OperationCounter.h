#pragma once

#include <cstdint>
#include <memory>

#include <ATen/record_function.h>

namespace flowscope::bench {

// Counts the ATen operations called at the top level on this thread (the inner calls of a
// composite operation are not counted). On a GPU each is at least one kernel launch, so the
// count per step is what a launch-bound loop pays for, and it can be counted on any device.
class OperationCounter {
public:
    OperationCounter() {
        s_count = 0;
        s_depth = 0;
        m_handle = at::addThreadLocalCallback(
            at::RecordFunctionCallback(&OperationCounter::start, &OperationCounter::end).scopes({at::RecordScope::FUNCTION}));
    }
    ~OperationCounter() { at::removeCallback(m_handle); }
    OperationCounter(const OperationCounter&) = delete;
    OperationCounter& operator=(const OperationCounter&) = delete;
    int64_t count() const { return s_count; }

private:
    static std::unique_ptr<at::ObserverContext> start(const at::RecordFunction&) {
        if (s_depth++ == 0) ++s_count;
        return nullptr;
    }
    static void end(const at::RecordFunction&, at::ObserverContext*) { --s_depth; }

    static inline thread_local int64_t s_count = 0;
    static inline thread_local int s_depth = 0;
    at::CallbackHandle m_handle;
};

}  // namespace flowscope::bench
