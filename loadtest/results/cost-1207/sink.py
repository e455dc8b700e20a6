# A webhook sink for benchmarks: answers every POST 204 at once (keep-alive), counts requests,
# prints the count every 10 s to stdout. Usage: python3 sink.py PORT
import asyncio, sys, time
count = 0
async def handle(reader, writer):
    global count
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            n = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    n = int(line.split(b":", 1)[1])
            if n:
                await reader.readexactly(n)
            count += 1
            writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()
async def report():
    while True:
        await asyncio.sleep(10)
        print(f"{time.strftime('%H:%M:%S')} requests {count}", flush=True)
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]))
    asyncio.create_task(report())
    async with server:
        await server.serve_forever()
asyncio.run(main())
