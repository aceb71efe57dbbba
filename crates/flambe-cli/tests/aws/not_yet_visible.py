"""A proxy in front of moto that answers the first N DescribeInstances calls
naming instance ids with InvalidInstanceID.NotFound, as EC2 does for a while
after RunInstances (eventual consistency), and passes everything else on.
Usage: not_yet_visible.py MOTO_ENDPOINT N. Prints its own endpoint, then one
line per refused call."""
import http.server
import sys
import threading
import urllib.error
import urllib.request

target, refusals = sys.argv[1].rstrip("/"), int(sys.argv[2])
lock = threading.Lock()


class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def relay(self):
        global refusals
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        refuse = False
        if b"Action=DescribeInstances" in body and b"InstanceId.1=" in body:
            with lock:
                if refusals > 0:
                    refusals -= 1
                    refuse = True
        if refuse:
            answer = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
                      b"<Code>InvalidInstanceID.NotFound</Code><Message>The instance ID "
                      b"does not exist</Message></Error></Errors><RequestID>test</RequestID>"
                      b"</Response>")
            self.send_response(400)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
            print("refused DescribeInstances", flush=True)
            return
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("host", "content-length", "connection")}
        request = urllib.request.Request(target + self.path, data=body or None,
                                         headers=headers, method=self.command)
        try:
            with urllib.request.urlopen(request) as r:
                status, out_headers, answer = r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            status, out_headers, answer = e.code, e.headers, e.read()
        self.send_response(status)
        for k, v in out_headers.items():
            if k.lower() not in ("content-length", "connection", "transfer-encoding",
                                 "server", "date"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_GET = do_POST = do_PUT = do_DELETE = relay


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
server.serve_forever()
