#include "tui/terminal.hpp"

#include <curses.h>
#include <langinfo.h>
#include <term.h>
#include <termios.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <clocale>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>

namespace memray::tui {

namespace {

// The signal handlers need the session's state without a `this`: one session per process.
std::atomic<bool> g_open{false};
SCREEN* g_screen = nullptr;
volatile sig_atomic_t g_interrupted = 0;

// What a crash handler writes to put the terminal back: endwin() is not async-signal-safe (it
// takes ncurses' locks and may allocate), so the escape sequences that leave the full-screen
// mode are prepared when the session opens and the handler only write()s them and restores the
// saved termios, both async-signal-safe.
struct termios g_cooked;
bool g_have_cooked = false;
char g_restore_seq[512];
size_t g_restore_len = 0;

// SIGHUP too: when the terminal goes away (a closed ssh session) the view must still end cleanly,
// e.g. detach from its target, rather than die.
constexpr int k_interrupt_signals[] = {SIGINT, SIGTERM, SIGHUP};
// SIGQUIT (Ctrl-\) dumps core like a crash, so it gets the crash handler.
constexpr int k_crash_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGQUIT};
struct sigaction g_saved_interrupt[std::size(k_interrupt_signals)];
struct sigaction g_saved_crash[std::size(k_crash_signals)];

void restore_terminal_from_handler() {
    size_t done = 0;
    while (done < g_restore_len) {
        ssize_t n = ::write(STDOUT_FILENO, g_restore_seq + done, g_restore_len - done);
        if (n <= 0 && errno != EINTR) break;
        if (n > 0) done += size_t(n);
    }
    if (g_have_cooked) ::tcsetattr(STDIN_FILENO, TCSANOW, &g_cooked);
}

void on_interrupt(int) { g_interrupted = 1; }

void on_crash(int sig) {
    restore_terminal_from_handler();
    // The signal is blocked while its handler runs: with the default action back, the re-raised
    // signal is delivered (and kills with a core, as without us) as soon as the handler returns.
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    ::sigaction(sig, &dfl, nullptr);
    ::raise(sig);
}

void append_cap(const char* name) {
    const char* s = tigetstr(const_cast<char*>(name));
    if (s == nullptr || s == reinterpret_cast<const char*>(-1)) return;
    size_t len = std::strlen(s);
    if (g_restore_len + len > sizeof g_restore_seq) return;
    std::memcpy(g_restore_seq + g_restore_len, s, len);
    g_restore_len += len;
}

void install_handlers() {
    for (size_t i = 0; i < std::size(k_interrupt_signals); ++i) {
        struct sigaction sa {};
        sa.sa_handler = on_interrupt;
        sigemptyset(&sa.sa_mask);
        // No SA_RESTART: a read waiting for a key returns at once and the view sees the flag.
        sa.sa_flags = 0;
        ::sigaction(k_interrupt_signals[i], &sa, &g_saved_interrupt[i]);
    }
    for (size_t i = 0; i < std::size(k_crash_signals); ++i) {
        struct sigaction sa {};
        sa.sa_handler = on_crash;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = 0;
        ::sigaction(k_crash_signals[i], &sa, &g_saved_crash[i]);
    }
}

void restore_handlers() {
    for (size_t i = 0; i < std::size(k_interrupt_signals); ++i)
        ::sigaction(k_interrupt_signals[i], &g_saved_interrupt[i], nullptr);
    for (size_t i = 0; i < std::size(k_crash_signals); ++i)
        ::sigaction(k_crash_signals[i], &g_saved_crash[i], nullptr);
}

short curses_color(Color c) {
    switch (c) {
    case Color::Red: return COLOR_RED;
    case Color::Yellow: return COLOR_YELLOW;
    case Color::Green: return COLOR_GREEN;
    case Color::Cyan: return COLOR_CYAN;
    case Color::Blue: return COLOR_BLUE;
    case Color::Magenta: return COLOR_MAGENTA;
    case Color::White: return COLOR_WHITE;
    case Color::Default: break;
    }
    return -1;
}

constexpr Color k_all_colors[] = {Color::Red,  Color::Yellow,  Color::Green, Color::Cyan,
                                  Color::Blue, Color::Magenta, Color::White};

}  // namespace

Terminal::Terminal() {
    if (!::isatty(STDIN_FILENO) || !::isatty(STDOUT_FILENO))
        throw TerminalError("this view needs a terminal: stdin and stdout must be a terminal");
    bool expected = false;
    if (!g_open.compare_exchange_strong(expected, true))
        throw TerminalError("a terminal session is already open");

    // ncursesw draws UTF-8 only under a UTF-8 LC_CTYPE; the rest of the locale stays as it was.
    std::setlocale(LC_CTYPE, "");
    m_utf8 = std::strcmp(nl_langinfo(CODESET), "UTF-8") == 0;

    g_have_cooked = ::tcgetattr(STDIN_FILENO, &g_cooked) == 0;
    std::fflush(stdout);  // what the command printed before the view stays before it
    g_screen = newterm(nullptr, stdout, stdin);
    if (g_screen == nullptr) {
        g_open = false;
        const char* term = std::getenv("TERM");
        throw TerminalError(std::string("cannot open the terminal (TERM=") + (term ? term : "") +
                            "): unknown terminal type?");
    }
    set_term(g_screen);

    g_restore_len = 0;
    append_cap("rmkx");   // keypad_local
    append_cap("rmcup");  // exit_ca_mode: back from the alternate screen
    append_cap("sgr0");   // exit_attribute_mode
    append_cap("cnorm");  // cursor_normal
    g_interrupted = 0;
    install_handlers();

    cbreak();
    noecho();
    nonl();
    keypad(stdscr, TRUE);
    intrflush(stdscr, FALSE);
    curs_set(0);
    set_escdelay(25);  // Esc quits: the default 1 s wait for an escape sequence feels like a hang

    if (::has_colors()) {
        start_color();
        use_default_colors();
        for (Color c : k_all_colors) init_pair(short(c), curses_color(c), -1);
        m_colors = true;
    }
}

Terminal::~Terminal() {
    curs_set(1);
    endwin();
    delscreen(g_screen);
    g_screen = nullptr;
    restore_handlers();
    g_open = false;
}

int Terminal::width() const { return getmaxx(stdscr); }
int Terminal::height() const { return getmaxy(stdscr); }

Key Terminal::read_key(int timeout_ms) {
    if (g_interrupted) return {KeyKind::Interrupt, 0};
    wtimeout(stdscr, timeout_ms);
    wint_t ch = 0;
    int r = wget_wch(stdscr, &ch);
    if (g_interrupted) return {KeyKind::Interrupt, 0};
    if (r == ERR) return {KeyKind::None, 0};
    if (r == KEY_CODE_YES) {
        switch (ch) {
        case KEY_UP: return {KeyKind::Up, 0};
        case KEY_DOWN: return {KeyKind::Down, 0};
        case KEY_LEFT: return {KeyKind::Left, 0};
        case KEY_RIGHT: return {KeyKind::Right, 0};
        case KEY_PPAGE: return {KeyKind::PageUp, 0};
        case KEY_NPAGE: return {KeyKind::PageDown, 0};
        case KEY_HOME: return {KeyKind::Home, 0};
        case KEY_END: return {KeyKind::End, 0};
        case KEY_ENTER: return {KeyKind::Enter, 0};
        case KEY_BACKSPACE: return {KeyKind::Backspace, 0};
        case KEY_RESIZE: return {KeyKind::Resize, 0};
        default: return {KeyKind::Other, 0};
        }
    }
    switch (ch) {
    case 27: return {KeyKind::Escape, 0};
    case '\r':
    case '\n': return {KeyKind::Enter, 0};
    case 127:
    case 8: return {KeyKind::Backspace, 0};
    default: return {KeyKind::Char, char32_t(ch)};
    }
}

void Terminal::clear() { werase(stdscr); }

static attr_t attributes(const Style& style, bool colors) {
    attr_t a = A_NORMAL;
    if (colors && style.fg != Color::Default) a |= COLOR_PAIR(short(style.fg));
    if (style.bold) a |= A_BOLD;
    if (style.dim) a |= A_DIM;
    if (style.reverse) a |= A_REVERSE;
    if (style.underline) a |= A_UNDERLINE;
    return a;
}

int Terminal::put(int y, int x, std::string_view text, const Style& style, int max_width) {
    int room = width() - x;
    if (max_width >= 0 && max_width < room) room = max_width;
    if (y < 0 || y >= height() || x < 0 || room <= 0) return 0;
    std::string_view shown = clip_text(text, room);
    // Names come from the tracked process: a control character would move the cursor.
    std::string clean(shown);
    for (char& c : clean)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
    wattrset(stdscr, attributes(style, m_colors));
    mvwaddnstr(stdscr, y, x, clean.data(), int(clean.size()));
    wattrset(stdscr, A_NORMAL);
    return text_width(shown);
}

void Terminal::fill(int y, int x, int w, const Style& style) {
    if (y < 0 || y >= height() || x < 0 || x >= width()) return;
    if (w < 0 || w > width() - x) w = width() - x;
    if (w <= 0) return;
    mvwhline(stdscr, y, x, ' ' | attributes(style, m_colors), w);
}

void Terminal::set_cursor(int y, int x) {
    m_cursor_y = y;
    m_cursor_x = x;
}

void Terminal::present() {
    bool visible = m_cursor_y >= 0;
    if (visible != m_cursor_visible) {
        curs_set(visible ? 1 : 0);
        m_cursor_visible = visible;
    }
    if (visible) wmove(stdscr, m_cursor_y, m_cursor_x);
    wrefresh(stdscr);
}

int text_width(std::string_view text) {
    int n = 0;
    for (char c : text)
        if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++n;
    return n;
}

std::string_view clip_text(std::string_view text, int width) {
    if (width <= 0) return {};
    int n = 0;
    for (size_t i = 0; i < text.size(); ++i) {
        if ((static_cast<unsigned char>(text[i]) & 0xC0) == 0x80) continue;
        if (n == width) return text.substr(0, i);
        ++n;
    }
    return text;
}

void append_utf8(std::string& out, char32_t cp) {
    if (cp < 0x80) {
        out += char(cp);
    } else if (cp < 0x800) {
        out += char(0xC0 | (cp >> 6));
        out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += char(0xE0 | (cp >> 12));
        out += char(0x80 | ((cp >> 6) & 0x3F));
        out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x110000) {
        out += char(0xF0 | (cp >> 18));
        out += char(0x80 | ((cp >> 12) & 0x3F));
        out += char(0x80 | ((cp >> 6) & 0x3F));
        out += char(0x80 | (cp & 0x3F));
    }
}

}  // namespace memray::tui
