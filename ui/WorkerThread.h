#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

namespace flowscope::ui {

// A controller's worker thread, which its owner stops within a bound. The engine looks at a
// job's cancel flag between steps, but one step of a large batch (or a model loading) can run
// for many seconds without looking: closing the window must not wait for it. So stop() waits a
// short while and then lets the thread go; it ends on its own once the job returns. The body
// must therefore own (by shared_ptr) everything it touches, and post nothing once let go.
class WorkerThread {
public:
    WorkerThread() = default;
    ~WorkerThread();
    WorkerThread(const WorkerThread&) = delete;
    WorkerThread& operator=(const WorkerThread&) = delete;

    // Runs `body` on a new thread, after joining the previous one (whose body has returned).
    void start(std::function<void()> body);
    // Waits up to `timeout` for the body to return: true when it did (the thread is joined),
    // false when the thread was let go.
    bool stop(std::chrono::milliseconds timeout);

    // Threads let go that are still running. While there are any, the process must end without
    // running the destructors of static objects that those threads may still use (LibTorch's).
    static int abandonedCount();

    // Sets the calling thread's nice value (below the UI thread's priority for positive values);
    // threads it creates afterwards inherit it.
    static void setThisThreadNice(int nice);

private:
    struct State {
        std::mutex mutex;
        std::condition_variable ended;
        bool done = false;
        bool abandoned = false;
    };
    std::shared_ptr<State> m_state;
    std::thread m_thread;
};

}  // namespace flowscope::ui
