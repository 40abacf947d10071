#include "ui/WorkerThread.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace flowscope::ui {
namespace {
std::atomic<int> g_abandoned{0};
}  // namespace

WorkerThread::~WorkerThread() {
    // An owner that never called stop() waits, as std::thread requires of a joinable thread.
    if (m_thread.joinable()) m_thread.join();
}

void WorkerThread::start(std::function<void()> body) {
    if (m_thread.joinable()) m_thread.join();
    m_state = std::make_shared<State>();
    m_thread = std::thread([state = m_state, body = std::move(body)]() mutable {
        body();
        // The body's captures (the worker's state) go here, on this thread, before the owner is
        // told: a joined owner then finds nothing of the job left to free.
        body = nullptr;
        std::lock_guard lock(state->mutex);
        state->done = true;
        if (state->abandoned) --g_abandoned;
        state->ended.notify_all();
    });
}

bool WorkerThread::stop(std::chrono::milliseconds timeout) {
    if (!m_thread.joinable()) return true;
    std::unique_lock lock(m_state->mutex);
    if (!m_state->ended.wait_for(lock, timeout, [this] { return m_state->done; })) {
        m_state->abandoned = true;
        ++g_abandoned;
        m_thread.detach();
        return false;
    }
    lock.unlock();
    m_thread.join();
    return true;
}

int WorkerThread::abandonedCount() { return g_abandoned.load(); }

void WorkerThread::setThisThreadNice(int nice) {
    setpriority(PRIO_PROCESS, static_cast<id_t>(::syscall(SYS_gettid)), nice);
}

}  // namespace flowscope::ui
