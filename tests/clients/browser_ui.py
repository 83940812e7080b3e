"""Drives the server's page in a real browser (headless Chromium through chromedriver, spoken
to in the W3C WebDriver protocol with the standard library only): sends an image and a
question and reads the streamed answer; sends a series and checks its forecast was plotted.

Usage: browser_ui.py CHROMEDRIVER CHROMIUM SERVER_URL IMAGE_PATH
Prints one JSON line with what the page showed.
"""

import json
import socket
import subprocess
import sys
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Driver:
    def __init__(self, chromedriver, chromium):
        self.port = free_port()
        self.proc = subprocess.Popen([chromedriver, f"--port={self.port}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 30
        while True:
            try:
                self.call("GET", "/status")
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1200,900"]},
        }}}
        self.session = self.call("POST", "/session", caps)["sessionId"]

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            return json.loads(r.read())["value"] if path != "/status" else None

    def s(self, method, path, body=None):
        return self.call(method, f"/session/{self.session}{path}", body)

    def find(self, css):
        found = self.s("POST", "/element", {"using": "css selector", "value": css})
        return next(iter(found.values()))

    def js(self, script, *args):
        return self.s("POST", "/execute/sync", {"script": script, "args": list(args)})

    def wait(self, script, what, seconds=300):
        deadline = time.time() + seconds
        while time.time() < deadline:
            value = self.js(script)
            if value:
                return value
            time.sleep(0.25)
        raise TimeoutError(f"the page never showed {what}")

    def quit(self):
        try:
            self.s("DELETE", "")
        finally:
            self.proc.terminate()


def main():
    chromedriver, chromium, url, image = sys.argv[1:5]
    d = Driver(chromedriver, chromium)
    seen = {}
    try:
        d.s("POST", "/url", {"url": url})
        seen["model"] = d.wait("return document.getElementById('model').textContent"
                               ".includes('context') && document.getElementById('model').textContent",
                               "the model's name")
        seen["adapters"] = d.wait("return document.querySelectorAll('.adapter').length",
                                  "the adapters")
        # An image and a question, answered in the page.
        d.s("POST", f"/element/{d.find('#image-file')}/value", {"text": image})
        d.wait("return document.getElementById('attached').textContent === 'image'",
               "the attached image")
        d.s("POST", f"/element/{d.find('#prompt')}/value", {"text": "What does the picture show?"})
        d.s("POST", f"/element/{d.find('#send')}/click", {})
        seen["answer_state"] = d.wait(
            "const a = document.getElementById('answer'); return a && a.dataset.done",
            "the answer's end")
        seen["answer"] = d.js("return document.getElementById('answer').textContent")
        seen["user_line"] = d.js("return document.querySelector('.msg.user').textContent")
        # A series, forecast and plotted.
        values = " ".join(f"{10 + (i % 24) / 4:.2f}" for i in range(120))
        d.s("POST", f"/element/{d.find('#series')}/value", {"text": values})
        d.s("POST", f"/element/{d.find('#forecast')}/click", {})
        seen["forecast_points"] = int(d.wait(
            "return document.getElementById('forecast-plot').dataset.points",
            "the forecast plot"))
        # Pixels of the two colours the plot draws (history blue, forecast orange).
        seen["plot_colours"] = d.js("""
            const c = document.getElementById('forecast-plot');
            const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let blue = 0, orange = 0;
            for (let i = 0; i < px.length; i += 4) {
              if (px[i] < 80 && px[i + 2] > 110) blue++;
              if (px[i] > 180 && px[i + 1] > 80 && px[i + 1] < 150 && px[i + 2] < 60) orange++;
            }
            return {blue, orange};""")
    finally:
        d.quit()
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
