// The terminal layer of the interactive views (the live view, the interactive tree): a full-screen
// ncurses session behind a small interface, so that the views contain no ncurses calls and no
// ncurses header leaks into their includers.
//
// The session restores the terminal on every exit path: the destructor (normal return and
// exceptions), SIGINT/SIGTERM/SIGHUP (turned into Key::Interrupt so the view can end cleanly, e.g.
// detach from its target), and crash signals (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGQUIT:
// the terminal is restored, then the signal is re-raised with its default action so the crash is
// not hidden).
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace memray::tui {

// stdin/stdout is not a terminal, the terminal type is unknown, or a session is already open.
class TerminalError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

enum class KeyKind {
    None,       // the timeout passed without input
    Char,       // a printable character or control character: Key::ch
    Up,
    Down,
    Left,
    Right,
    PageUp,
    PageDown,
    Home,
    End,
    Enter,
    Backspace,
    Escape,
    Resize,     // the terminal changed size: width()/height() already report the new size
    Interrupt,  // SIGINT (Ctrl-C), SIGTERM or SIGHUP arrived: the view should end
    Other,      // a function key the views do not use
};

struct Key {
    KeyKind kind = KeyKind::None;
    char32_t ch = 0;  // KeyKind::Char only

    bool is(char c) const { return kind == KeyKind::Char && ch == char32_t(static_cast<unsigned char>(c)); }
};

enum class Color { Default, Red, Yellow, Green, Cyan, Blue, Magenta, White };

struct Style {
    Color fg = Color::Default;
    bool bold = false;
    bool dim = false;
    bool reverse = false;
    bool underline = false;
};

class Terminal {
  public:
    // Opens the full-screen session on stdin/stdout. Throws TerminalError when either is not a
    // terminal or when another session is open (the signal handlers are per process).
    Terminal();
    ~Terminal();
    Terminal(const Terminal&) = delete;
    Terminal& operator=(const Terminal&) = delete;

    int width() const;
    int height() const;
    bool has_colors() const { return m_colors; }
    // The terminal takes UTF-8: the views may draw box and block characters, else ASCII.
    bool utf8() const { return m_utf8; }

    // Waits at most timeout_ms (-1: forever) for a key.
    Key read_key(int timeout_ms);

    // Drawing goes to an off-screen buffer; present() sends only the cells that changed.
    void clear();
    // Draws text (UTF-8) at row y, column x, clipped at the right edge; max_width < 0 means up
    // to the edge. Returns the number of columns drawn.
    int put(int y, int x, std::string_view text, const Style& style = {}, int max_width = -1);
    // Fills width columns of row y from column x with spaces in the given style (a bar, a
    // highlighted row); width < 0 means to the right edge.
    void fill(int y, int x, int width, const Style& style);
    // Shows the cursor at (y, x) (a text prompt), or hides it when y < 0.
    void set_cursor(int y, int x);
    void present();

  private:
    bool m_colors = false;
    bool m_utf8 = false;
    bool m_cursor_visible = false;
    int m_cursor_y = -1;
    int m_cursor_x = -1;
};

// Columns taken by a UTF-8 string, one per code point (the views draw no wide characters).
int text_width(std::string_view text);
// The longest prefix of text that fits in width columns, not splitting a code point.
std::string_view clip_text(std::string_view text, int width);
// Appends the UTF-8 encoding of a code point (filter input typed on the keyboard).
void append_utf8(std::string& out, char32_t cp);

}  // namespace memray::tui
