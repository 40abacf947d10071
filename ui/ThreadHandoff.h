#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <utility>

#include <QCoreApplication>
#include <QEvent>
#include <QObject>
#include <QPointer>

// Results cross from the worker threads to the UI thread through Qt's queued events. Qt
// synchronizes that hand-off with its own mutexes, but Debian's Qt is not built with
// ThreadSanitizer, so the tsan build cannot see them and would report every result the UI reads
// as a race. These calls tell it about the hand-off itself: the worker releases before posting
// and the receiver acquires before touching what was posted. Outside the tsan build they vanish.
// (An earlier version posted a lambda with QMetaObject::invokeMethod; Qt allocates that functor
// after the release and reads it before the acquire, which TSan rightly could not order.)
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

// What post() sends: the emitter travels inside an event that the worker allocates and fills
// before its release, so that nothing the receiver reads was written after it.
class Task : public QEvent {
public:
    static QEvent::Type kind() {
        static const auto type = static_cast<QEvent::Type>(QEvent::registerEventType());
        return type;
    }
    explicit Task(std::function<void()> run) : QEvent(kind()), m_run(std::move(run)) {}
    // Also when Qt drops a queued task (its relay destroyed first): acquire before the members go.
    ~Task() override { acquire(this); }
    void run() { m_run(); }

private:
    std::function<void()> m_run;
};

// Receives the tasks on its own thread (the one that created it, e.g. a controller's UI thread):
// acquires first, then reads the task. Tasks still queued when it is destroyed are dropped.
class Relay : public QObject {
public:
    using QObject::QObject;

protected:
    bool event(QEvent* event) override {
        acquire(event);
        if (event->type() == Task::kind()) {
            static_cast<Task*>(event)->run();
            return true;
        }
        return QObject::event(event);
    }
};

// Runs `emitter(receiver)` on the relay's thread through its event queue, after the hand-off
// above; dropped if the receiver or the relay is gone by then. Call from a worker thread.
template <typename Receiver, typename Emitter>
void post(Relay& relay, Receiver* receiver, Emitter emitter) {
    auto* task = new Task([guard = QPointer<Receiver>(receiver), emitter = std::move(emitter)] {
        if (guard) emitter(guard.data());
    });
    release(task);
    QCoreApplication::postEvent(&relay, task);
}

// A worker's way back to its controller: the relay (made and destroyed on the controller's
// thread) behind a mutex. post() from the worker thread; close() from the controller's
// destructor, after which queued tasks are dropped and posts do nothing (a worker let go may
// outlive its controller, see WorkerThread).
template <typename Controller>
class Outbox {
public:
    explicit Outbox(Controller* controller) : m_controller(controller), m_relay(std::make_unique<Relay>()) {}

    // Runs `emitter(controller)` on the controller's thread; dropped if the controller is gone by then.
    template <typename Emitter>
    void post(Emitter emitter) {
        const std::lock_guard lock(m_mutex);
        if (m_relay) handoff::post(*m_relay, m_controller, std::move(emitter));
    }

    void close() {
        const std::lock_guard lock(m_mutex);
        m_relay.reset();
    }

private:
    Controller* m_controller;
    std::unique_ptr<Relay> m_relay;
    std::mutex m_mutex;
};

}  // namespace flowscope::ui::handoff
