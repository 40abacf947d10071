#pragma once

#include <utility>

#include <QMetaObject>
#include <QPointer>

// Results cross from the worker threads to the UI thread through Qt's queued events. Qt
// synchronizes that hand-off with its own mutexes, but Debian's Qt is not built with
// ThreadSanitizer, so the tsan build cannot see them and would report every result the UI reads
// as a race. These calls tell it about the hand-off itself: the worker releases before posting
// and the receiver acquires before touching what was posted. Outside the tsan build they vanish.
#if defined(__SANITIZE_THREAD__)
extern "C" void __tsan_acquire(void* address);
extern "C" void __tsan_release(void* address);
#endif

namespace flowscope::ui::handoff {

inline void release(void* token) {
#if defined(__SANITIZE_THREAD__)
    __tsan_release(token);
#else
    (void)token;
#endif
}

inline void acquire(void* token) {
#if defined(__SANITIZE_THREAD__)
    __tsan_acquire(token);
#else
    (void)token;
#endif
}

// Runs `emitter(receiver)` on the receiver's thread through its event queue, after the hand-off
// above; dropped if the receiver is gone by then. Call from a worker thread that the receiver
// outlives until it is joined.
template <typename Receiver, typename Emitter>
void post(Receiver* receiver, Emitter emitter) {
    QPointer<Receiver> guard(receiver);
    release(receiver);
    QMetaObject::invokeMethod(
        receiver,
        [guard, emitter = std::move(emitter), token = static_cast<void*>(receiver)] {
            acquire(token);
            if (guard) emitter(guard.data());
        },
        Qt::QueuedConnection);
}

}  // namespace flowscope::ui::handoff
