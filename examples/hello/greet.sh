#!/bin/sh
echo "hello, $1, from a file $(cat /app/built.txt), running as uid $(id -u)"
