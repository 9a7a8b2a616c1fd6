FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY elog_stream ./elog_stream
COPY web ./web
RUN pip install --no-cache-dir .
EXPOSE 8000
ENTRYPOINT ["elog-stream"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
