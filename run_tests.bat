@echo off
rem Windows twin of "pip install -r requirements.dev.txt && python -m pytest".
rem Creates .venv if missing, installs the dev requirements, runs pytest with any arguments
rem passed to this script, and exits with pytest's exit code.
setlocal
cd /d "%~dp0"

if not exist ".venv\Scripts\python.exe" (
    echo Creating virtual environment in .venv ...
    py -3 -m venv .venv 2>nul || python -m venv .venv
    if errorlevel 1 (
        echo Could not create .venv: install Python 3.11 or newer from python.org. 1>&2
        exit /b 1
    )
)

".venv\Scripts\python.exe" -m pip install --quiet --disable-pip-version-check -r requirements.dev.txt
if errorlevel 1 (
    echo Installing requirements.dev.txt failed. 1>&2
    exit /b 1
)

".venv\Scripts\python.exe" -m pytest %*
exit /b %errorlevel%
