// The Boost.Beast/Asio implementation of HttpServer. Beast parses requests; responses are
// serialized here (status line, headers, Content-Length or chunked body), so every write is a
// plain string in one queue per connection.
#include "server/http_server.h"

#include <algorithm>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace carpool::server {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

constexpr size_t kWatchReadBytes = 4096;
constexpr size_t kMaxPipelinedBytes = 1 << 20;  // bytes read ahead while a request is answered
constexpr double kLingerSeconds = 2.0;

const char* reason_phrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 413:
      return "Payload Too Large";
    case 415:
      return "Unsupported Media Type";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    default:
      return "Unknown";
  }
}

// A request target in absolute form ("http://host:port/path?query", as proxies send it; servers
// must accept it, RFC 9112 3.2.2) as its path and query; other targets as they are.
std::string_view origin_form(std::string_view target) {
  for (std::string_view scheme : {"http://", "https://"}) {
    if (target.size() < scheme.size()) continue;
    bool match = true;
    for (size_t i = 0; i < scheme.size(); ++i) {
      match = match && std::tolower(static_cast<unsigned char>(target[i])) == scheme[i];
    }
    if (!match) continue;
    const size_t path = target.find_first_of("/?", scheme.size());
    if (path == std::string_view::npos) return "/";
    return target.substr(path);  // ("?query" alone: the path is empty, read as "/")
  }
  return target;
}

// http10: the request was HTTP/1.0, which knows neither chunked bodies (a body of unknown length
// ends with the connection, RFC 9112 6.1 and 6.3) nor persistent connections unless asked.
std::string serialize_head(int status, const std::string& content_type,
                           const std::vector<std::pair<std::string, std::string>>& headers,
                           std::optional<size_t> content_length, bool close, bool http10) {
  std::string s = "HTTP/1.1 " + std::to_string(status) + " " + reason_phrase(status) + "\r\n";
  s += "Server: carpool\r\n";
  if (!content_type.empty()) s += "Content-Type: " + content_type + "\r\n";
  for (const auto& [k, v] : headers) s += k + ": " + v + "\r\n";
  if (status == 204) {
    // no body and no Content-Length (RFC 9110 8.6)
  } else if (content_length) {
    s += "Content-Length: " + std::to_string(*content_length) + "\r\n";
  } else if (!http10) {
    s += "Transfer-Encoding: chunked\r\n";
  }
  if (close) s += "Connection: close\r\n";
  if (!close && http10) s += "Connection: keep-alive\r\n";
  s += "\r\n";
  return s;
}

// The CORS headers of an answer to a request with this Origin (empty: none): the allowed origin,
// and Vary: Origin where answers depend on it (with a list of origins, or none, the server
// refuses other origins' pages; with "*" every request gets the same answer). Returns whether
// an origin was allowed.
bool add_cors_headers(std::string_view origin, const std::vector<std::string>& allowed,
                      std::vector<std::pair<std::string, std::string>>* headers) {
  const std::string allow = cors_allow_origin(origin, allowed);
  if (!allow.empty()) headers->emplace_back("Access-Control-Allow-Origin", allow);
  if (std::find(allowed.begin(), allowed.end(), "*") == allowed.end()) {
    headers->emplace_back("Vary", "Origin");  // also where this Origin (or none) got no header
  }
  return !allow.empty();
}

std::string simple_error_body(const std::string& message, const std::string& type) {
  // A fixed-shape OpenAI error object; `message` holds no characters that need escaping.
  return "{\"error\":{\"message\":\"" + message + "\",\"type\":\"" + type +
         "\",\"param\":null,\"code\":null}}";
}

}  // namespace

// Work posted to the sessions from other threads (the engine's token events: one per sequence
// per step) reaches the IO threads in one wake-up per burst: the first post of a burst (or the
// end of a hold, around one engine step's events) schedules a drain on a strand of its own, which
// moves everything gathered by then onto the sessions' executors from inside an IO thread, where
// posting needs no further wake-up. Every post waking an IO thread would preempt a compute thread
// once per token (on a machine whose cores all compute, that stalls the whole step at its next
// barrier). Order per session is kept: one drain strand, FIFO.
class PostBatcher {
 public:
  explicit PostBatcher(net::io_context& ioc) : strand_(net::make_strand(ioc)) {}

  void post(net::any_io_executor target, std::function<void()> fn) {
    bool first = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      first = items_.empty() && !hold_;
      items_.push_back({std::move(target), std::move(fn)});
    }
    if (first) net::post(strand_, [this] { drain(); });
  }

  // While held, posts only gather (the engine delivers one step's events); the release
  // schedules one drain for all of them.
  void hold(bool on) {
    bool schedule = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      schedule = hold_ && !on && !items_.empty();
      hold_ = on;
    }
    if (schedule) net::post(strand_, [this] { drain(); });
  }

 private:
  struct Item {
    net::any_io_executor target;
    std::function<void()> fn;
  };
  void drain() {
    std::vector<Item> items;
    {
      std::lock_guard<std::mutex> lock(mu_);
      items.swap(items_);
    }
    for (Item& it : items) net::post(it.target, std::move(it.fn));
  }

  net::strand<net::io_context::executor_type> strand_;
  std::mutex mu_;
  std::vector<Item> items_;
  bool hold_ = false;
};

struct HttpServer::Impl {
  HttpServerOptions opts;
  Handler handler;
  net::io_context ioc;
  PostBatcher batcher{ioc};
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
  tcp::acceptor acceptor{ioc};
  net::signal_set signals{ioc};
  std::function<void(int)> signal_fn;
  std::vector<std::thread> threads;
  std::atomic<int> active{0};
  std::atomic<int> bound_port{0};
  std::atomic<bool> draining{false};
  bool stopped = false;

  void do_accept();
  void on_accept_error();
  void arm_signals();
};

namespace {

class Session;

class ExchangeImpl final : public Exchange {
 public:
  ExchangeImpl(std::shared_ptr<Session> session, HttpRequest request)
      : session_(std::move(session)),
        request_(std::move(request)),
        head_only_(request_.method == "HEAD") {}

  const HttpRequest& request() const override { return request_; }
  void respond(HttpResponse response) override;
  void start_stream(int status, std::string content_type,
                    std::vector<std::pair<std::string, std::string>> headers) override;
  void write(std::string data) override;
  void end_stream() override;
  void post(std::function<void()> fn) override;
  void on_close(std::function<void()> fn) override;
  bool closed() const override { return closed_; }

  // Called by the session when the client disconnects.
  void mark_closed() {
    if (closed_) return;
    closed_ = true;
    auto fns = std::move(close_fns_);
    for (auto& fn : fns) fn();
  }
  bool done() const { return done_; }

 private:
  // The answer's head, CORS header added.
  std::string head(int status, const std::string& content_type,
                   std::vector<std::pair<std::string, std::string>> headers,
                   std::optional<size_t> content_length);

  std::shared_ptr<Session> session_;  // keeps the connection alive while a handler holds this
  HttpRequest request_;
  bool head_only_;  // HEAD: the head of the GET answer, without its body
  std::vector<std::function<void()>> close_fns_;
  bool closed_ = false;
  bool done_ = false;  // the whole answer has been queued
  bool streaming_ = false;
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, HttpServer::Impl& server)
      : stream_(std::move(socket)), server_(server) {}

  void start() {
    net::dispatch(stream_.get_executor(),
                  beast::bind_front_handler(&Session::do_read, shared_from_this()));
  }

  auto executor() { return stream_.get_executor(); }
  HttpServer::Impl& server() { return server_; }

  // Queues bytes; `last` marks the end of the current answer.
  void enqueue(std::string data, bool last) {
    if (dead_) return;
    pending_bytes_ += data.size();
    if (pending_bytes_ > server_.opts.max_pending_write_bytes) {
      disconnect();  // the client does not read fast enough
      return;
    }
    if (!data.empty()) queue_.push_back(std::move(data));
    if (last) answer_complete_ = true;
    if (!writing_) do_write();
  }
  // The request being answered was HTTP/1.0.
  bool http10() const { return http10_; }
  // The connection closes after this answer (an HTTP/1.0 stream, delimited by the close).
  void close_after_answer() { keep_alive_ = false; }
  // Whether the connection stays open after this answer (not while the server drains).
  bool keep_alive() {
    if (server_.draining.load()) keep_alive_ = false;
    return keep_alive_;
  }

  // Reports an answer's status to HttpServerOptions::on_response (path: empty for rejections).
  void count_response(std::string_view path, int status) {
    if (server_.opts.on_response) server_.opts.on_response(path, status);
  }

 private:
  void do_read() {
    if (dead_) return;
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(server_.opts.max_header_bytes));
    parser_->body_limit(server_.opts.max_body_bytes);
    stream_.expires_after(
        std::chrono::milliseconds(static_cast<int64_t>(server_.opts.idle_timeout_s * 1000)));
    http::async_read_header(stream_, buffer_, *parser_,
                            beast::bind_front_handler(&Session::on_header, shared_from_this()));
  }

  // The head is in: a client that sent `Expect: 100-continue` waits for an interim 100 before it
  // sends the body (curl does so above 1 MiB, and waited a second for it); over-long bodies were
  // refused by the parser already (their Content-Length against body_limit).
  void on_header(beast::error_code ec, size_t n) {
    if (ec || parser_->is_done()) return on_read(ec, n);
    const auto& msg = parser_->get();
    if (beast::iequals(msg[http::field::expect], "100-continue")) {
      enqueue("HTTP/1.1 100 Continue\r\n\r\n", false);
    }
    http::async_read(stream_, buffer_, *parser_,
                     beast::bind_front_handler(&Session::on_read, shared_from_this()));
  }

  void on_read(beast::error_code ec, size_t) {
    if (ec == http::error::header_limit) {
      return reject(431, "request headers exceed " + std::to_string(server_.opts.max_header_bytes) +
                             " bytes");
    }
    if (ec == http::error::body_limit) {
      return reject(
          413, "request body exceeds " + std::to_string(server_.opts.max_body_bytes) + " bytes");
    }
    if (ec && ec.category() == http::make_error_code(http::error::end_of_stream).category() &&
        ec != http::error::end_of_stream && ec != http::error::partial_message) {
      return reject(400, "malformed HTTP request");
    }
    if (ec) return disconnect();
    stream_.expires_never();

    auto& msg = parser_->get();
    HttpRequest req;
    req.method = std::string(msg.method_string());
    const std::string_view target = origin_form({msg.target().data(), msg.target().size()});
    size_t q = target.find('?');
    req.path = decode_path(target.substr(0, q));
    if (req.path.empty()) req.path = "/";
    if (q != std::string_view::npos) req.query = std::string(target.substr(q + 1));
    for (const auto& field : msg) {
      std::string name(field.name_string());
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      req.headers.emplace_back(std::move(name), std::string(field.value()));
    }
    req.body = std::move(msg.body());
    keep_alive_ = msg.keep_alive();
    http10_ = msg.version() == 10;
    parser_.reset();

    answer_complete_ = false;
    current_ = std::make_shared<ExchangeImpl>(shared_from_this(), std::move(req));
    server_.active.fetch_add(1);
    start_watch();
    server_.handler(current_);
  }

  // Answers without a handler and closes (limits, malformed requests).
  void reject(int status, const std::string& message) {
    count_response({}, status);
    keep_alive_ = false;
    std::string body = simple_error_body(message, "invalid_request_error");
    answer_complete_ = true;
    rejecting_ = true;
    // A browser reads the refusal (413) only with the CORS header, from the fields read so far.
    std::vector<std::pair<std::string, std::string>> headers;
    if (parser_) {
      const auto origin = parser_->get()[http::field::origin];
      add_cors_headers(std::string_view(origin.data(), origin.size()), server_.opts.allowed_origins,
                       &headers);
    }
    enqueue(serialize_head(status, "application/json", headers, body.size(), true, http10_) + body,
            true);
  }

  // A read kept pending while a request is answered, to notice a disconnect.
  void start_watch() {
    if (watch_pending_ || dead_ || buffer_.size() > kMaxPipelinedBytes) return;
    watch_pending_ = true;
    stream_.async_read_some(buffer_.prepare(kWatchReadBytes),
                            beast::bind_front_handler(&Session::on_watch, shared_from_this()));
  }

  void on_watch(beast::error_code ec, size_t n) {
    watch_pending_ = false;
    if (dead_) return;
    if (closing_) return do_drain();
    if (!ec) {
      buffer_.commit(n);  // the client pipelined its next request
      if (current_) {
        start_watch();
      } else {
        do_read();
      }
      return;
    }
    if (ec == net::error::operation_aborted) {
      if (!current_) do_read();
      return;
    }
    disconnect();
  }

  void do_write() {
    if (queue_.empty()) {
      if (answer_complete_) finish_answer();
      return;
    }
    writing_ = true;
    inflight_.clear();
    while (!queue_.empty()) {
      inflight_.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
    buffers_.clear();
    for (const auto& s : inflight_) buffers_.emplace_back(s.data(), s.size());
    net::async_write(stream_, buffers_,
                     beast::bind_front_handler(&Session::on_write, shared_from_this()));
  }

  void on_write(beast::error_code ec, size_t n) {
    writing_ = false;
    if (dead_) return;
    if (ec) return disconnect();
    pending_bytes_ -= n;
    inflight_.clear();
    do_write();
  }

  void finish_answer() {
    answer_complete_ = false;
    if (current_) {
      current_.reset();
      server_.active.fetch_sub(1);
    }
    if (rejecting_ || !keep_alive_) return linger_close();
    if (watch_pending_) {
      stream_.socket().cancel();  // on_watch resumes reading
    } else {
      do_read();
    }
  }

  // Half-closes, drains what the client still sends for a moment, then closes, so that the
  // client reads the answer instead of a reset.
  void linger_close() {
    closing_ = true;
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    drain_.resize(kWatchReadBytes);
    drain_deadline_ = std::chrono::steady_clock::now() +
                      std::chrono::milliseconds(static_cast<int>(kLingerSeconds * 1000));
    if (watch_pending_) {
      stream_.socket().cancel();  // on_watch continues with do_drain
      return;
    }
    do_drain();
  }
  void do_drain() {
    if (dead_) return;
    stream_.expires_at(drain_deadline_);
    stream_.async_read_some(net::buffer(drain_),
                            [self = shared_from_this()](beast::error_code ec, size_t) {
                              if (ec) return self->close_socket();
                              self->do_drain();
                            });
  }

  void disconnect() {
    if (dead_) return;
    if (current_) {
      auto ex = std::move(current_);
      current_.reset();
      server_.active.fetch_sub(1);
      ex->mark_closed();
    }
    close_socket();
  }

  void close_socket() {
    dead_ = true;
    queue_.clear();
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.close();
  }

  beast::tcp_stream stream_;
  HttpServer::Impl& server_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<ExchangeImpl> current_;
  std::deque<std::string> queue_;
  std::vector<std::string> inflight_;
  std::vector<net::const_buffer> buffers_;
  std::vector<char> drain_;
  size_t pending_bytes_ = 0;
  bool writing_ = false;
  bool watch_pending_ = false;
  bool answer_complete_ = false;
  bool keep_alive_ = true;
  bool http10_ = false;
  bool rejecting_ = false;
  bool dead_ = false;
  bool closing_ = false;
  std::chrono::steady_clock::time_point drain_deadline_;
};

std::string ExchangeImpl::head(int status, const std::string& content_type,
                               std::vector<std::pair<std::string, std::string>> headers,
                               std::optional<size_t> content_length) {
  if (add_cors_headers(request_.header("origin"), session_->server().opts.allowed_origins,
                       &headers)) {
    // Clients back off on 429/503 by Retry-After (openai's JS client does); pages see only the
    // headers exposed to them.
    headers.emplace_back("Access-Control-Expose-Headers",
                         "Retry-After, WWW-Authenticate, X-Request-Id");
  }
  return serialize_head(status, content_type, headers, content_length, !session_->keep_alive(),
                        session_->http10());
}

void ExchangeImpl::respond(HttpResponse r) {
  if (done_ || closed_ || streaming_) return;  // a started stream ends with end_stream()
  done_ = true;
  session_->count_response(request_.path, r.status);
  std::string out = head(r.status, r.content_type, std::move(r.headers), r.body.size());
  if (!head_only_) out += r.body;  // a HEAD answer has no body (RFC 9110 9.3.2)
  session_->enqueue(std::move(out), true);
}

void ExchangeImpl::start_stream(int status, std::string content_type,
                                std::vector<std::pair<std::string, std::string>> headers) {
  if (done_ || closed_ || streaming_) return;
  streaming_ = true;
  session_->count_response(request_.path, status);
  if (session_->http10()) session_->close_after_answer();  // the close ends the body
  if (head_only_) {  // the head alone: the stream's writes and end are dropped
    done_ = true;
    session_->enqueue(head(status, content_type, std::move(headers), std::nullopt), true);
    return;
  }
  session_->enqueue(head(status, content_type, std::move(headers), std::nullopt), false);
}

void ExchangeImpl::write(std::string data) {
  if (done_ || closed_ || !streaming_ || data.empty()) return;
  if (session_->http10()) {  // no chunks: the bytes as they are
    session_->enqueue(std::move(data), false);
    return;
  }
  char size[32];
  std::snprintf(size, sizeof(size), "%zx\r\n", data.size());
  std::string chunk = size;
  chunk += data;
  chunk += "\r\n";
  session_->enqueue(std::move(chunk), false);
}

void ExchangeImpl::end_stream() {
  if (done_ || closed_ || !streaming_) return;
  done_ = true;
  session_->enqueue(session_->http10() ? "" : "0\r\n\r\n", true);
}

void ExchangeImpl::post(std::function<void()> fn) {
  session_->server().batcher.post(session_->executor(), std::move(fn));
}

void ExchangeImpl::on_close(std::function<void()> fn) {
  if (closed_) {
    fn();
    return;
  }
  close_fns_.push_back(std::move(fn));
}

}  // namespace

void HttpServer::Impl::do_accept() {
  acceptor.async_accept(net::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
    if (!acceptor.is_open()) return;
    if (ec) return on_accept_error();
    beast::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    std::make_shared<Session>(std::move(socket), *this)->start();
    do_accept();
  });
}

void HttpServer::Impl::on_accept_error() {
  // Usually out of file descriptors: wait a little instead of spinning.
  auto timer = std::make_shared<net::steady_timer>(ioc, std::chrono::milliseconds(50));
  timer->async_wait([this, timer](beast::error_code) {
    if (acceptor.is_open()) do_accept();
  });
}

void HttpServer::Impl::arm_signals() {
  signals.async_wait([this](beast::error_code ec, int sig) {
    if (ec) return;
    if (signal_fn) signal_fn(sig);
    arm_signals();
  });
}

HttpServer::HttpServer(HttpServerOptions options, Handler handler)
    : impl_(std::make_unique<Impl>()) {
  impl_->opts = std::move(options);
  impl_->handler = std::move(handler);
}

HttpServer::~HttpServer() {
  stop();
}

void HttpServer::on_signal(std::function<void(int)> fn) {
  impl_->signal_fn = std::move(fn);
  impl_->signals.add(SIGTERM);
  impl_->signals.add(SIGINT);
  impl_->arm_signals();
}

Status HttpServer::start() {
  Impl& s = *impl_;
  beast::error_code ec;
  if (s.opts.port < 0 || s.opts.port > 65535) return Status::error("--port must be in [0, 65535]");
  // An address, or a host name (localhost) resolved to its first address.
  auto addr = net::ip::make_address(s.opts.host, ec);
  if (ec) {
    tcp::resolver resolver(s.ioc);
    auto found = resolver.resolve(s.opts.host, "", ec);
    if (ec || found.empty()) {
      return Status::error("invalid --host '" + s.opts.host + "': not an address, and " +
                           (ec ? ec.message() : std::string("it resolves to none")));
    }
    addr = found.begin()->endpoint().address();
  }
  tcp::endpoint ep(addr, static_cast<uint16_t>(s.opts.port));
  s.acceptor.open(ep.protocol(), ec);
  if (!ec) s.acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) s.acceptor.bind(ep, ec);
  if (!ec) s.acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return Status::error("cannot listen on " + s.opts.host + ":" + std::to_string(s.opts.port) +
                         ": " + ec.message());
  }
  s.bound_port = s.acceptor.local_endpoint().port();
  s.work.emplace(net::make_work_guard(s.ioc));
  s.do_accept();
  const int n = std::max(1, s.opts.io_threads);
  for (int i = 0; i < n; ++i) s.threads.emplace_back([&s] { s.ioc.run(); });
  return Status::ok();
}

int HttpServer::port() const {
  return impl_->bound_port.load();
}

void HttpServer::hold_posts(bool on) {
  impl_->batcher.hold(on);
}

void HttpServer::stop_accepting() {
  net::post(impl_->ioc, [s = impl_.get()] {
    beast::error_code ec;
    s->acceptor.close(ec);
  });
}

void HttpServer::set_draining() {
  impl_->draining = true;
}

int HttpServer::active_exchanges() const {
  return impl_->active.load();
}

void HttpServer::stop() {
  Impl& s = *impl_;
  if (s.stopped) return;
  s.stopped = true;
  s.work.reset();
  s.ioc.stop();
  for (auto& t : s.threads) t.join();
  s.threads.clear();
}

}  // namespace carpool::server
